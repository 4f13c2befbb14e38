"""The snapshot hook and the final persister: ordered lists of small async stages.

Like structlog's processors, every stage has one narrow signature,
``async def stage(request, env) -> None``, and reads or fills fields of the
:class:`SaveRequest`. :func:`snapshot_hook` and :func:`final_persister` compose them in
one place; a bug variant replaces exactly one stage (see :mod:`sim.runtime.variants`).

Both pipelines pass the runtime bound at inference start explicitly, take the session
they were handed (else the turn's metadata session) and the inference id from the turn's
metadata, save through the TurnStore, retry transient failures a bounded number of times
(logged), and surface anything else as a recorded failure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import attrs

from persisters.errors import InvalidSaveError, StoreError, TransientStoreError
from persisters.model import (
    KEY_SESSION_ID,
    Block,
    SaveResult,
    Turn,
    TurnSaveOptions,
    extract_inference_id,
    trim_space,
)

SNAPSHOT = "snapshot"
FINAL = "final"


@attrs.define
class SaveRequest:
    """One save travelling through a pipeline; stages fill the lower fields."""

    pipeline: str
    conv_id: str
    session_id: str
    turn_id: str
    phase: str
    turn: Turn
    bound_runtime_key: str
    #: Reads the conversation's *current* pointer; only the late-bound bug variant uses it.
    current_runtime: Callable[[], str]
    #: Reads the inference's turn as it is *now* (the live container); only the
    #: ``live-snapshot-payload`` bug variant's stage uses it.
    live_turn: Callable[[], Turn] | None = None
    created_at_ms: int = 0
    runtime_key: str = ""
    inference_id: str = ""
    payload: str = ""
    attempts: int = 0
    result: SaveResult | None = None
    error: Exception | None = None

    def context(self) -> dict[str, Any]:
        return {
            "conv_id": self.conv_id,
            "session_id": self.session_id,
            "turn_id": self.turn_id,
            "phase": self.phase,
            "runtime_key": self.runtime_key,
            "inference_id": self.inference_id,
        }


class Saves(Protocol):
    """The one store call the stages make: :meth:`persisters.store.TurnStore.save`."""

    async def save(
        self,
        conv_id: str,
        session_id: str,
        turn_id: str,
        phase: str,
        created_at_ms: int,
        payload: str,
        options: TurnSaveOptions = ...,
    ) -> SaveResult: ...


class Emits(Protocol):
    """Where the stages report: one structured event per call."""

    def emit(self, event: str, **fields: Any) -> object: ...


class ChecksFaults(Protocol):
    """The fault plan: ``check`` raises the store error a matching fault rule injects."""

    def check(self, point: str, **ctx: Any) -> None: ...


class PipelineEnv(Protocol):
    """Exactly what stages use: a store to save to, a recorder, the fault plan, the retry
    settings and virtual time (the simulation's ``World`` is one)."""

    @property
    def store(self) -> Saves: ...

    @property
    def recorder(self) -> Emits: ...

    @property
    def faults(self) -> ChecksFaults: ...

    retry_attempts: int
    retry_backoff_ms: int
    store_latency_ms: int

    def now_ms(self) -> int: ...

    async def sleep(self, ms: int) -> None: ...


Stage = Callable[[SaveRequest, PipelineEnv], Awaitable[None]]

# -- stages ---------------------------------------------------------------------------


async def stamp_time(req: SaveRequest, env: PipelineEnv) -> None:
    """The snapshot's time is the virtual time it is taken at."""
    req.created_at_ms = env.now_ms()


async def bound_runtime(req: SaveRequest, env: PipelineEnv) -> None:
    """Rule 3: every save of a turn carries the runtime bound when its inference started."""
    req.runtime_key = req.bound_runtime_key


async def late_bound_runtime(req: SaveRequest, env: PipelineEnv) -> None:
    """BUG VARIANT ``late-snapshot-runtime``: read the conversation's pointer at each phase."""
    req.runtime_key = req.current_runtime()


async def inference_id_from_metadata(req: SaveRequest, env: PipelineEnv) -> None:
    """The inference id comes from the turn's metadata (with its legacy alias)."""
    req.inference_id = req.inference_id or extract_inference_id(req.turn.metadata)


async def session_from_metadata(req: SaveRequest, env: PipelineEnv) -> None:
    """The session the pipeline was handed, else the turn's ``geppetto.session_id@v1`` (as
    the real persisters did for a conversation without one); with neither the save is
    refused (:class:`InvalidSaveError`, surfaced like any failed save)."""
    if not trim_space(req.session_id):
        value = req.turn.metadata.get(KEY_SESSION_ID)
        req.session_id = trim_space(value) if isinstance(value, str) else ""
    if not req.session_id:
        raise InvalidSaveError(
            f"{req.pipeline} save of conversation {req.conv_id!r} has no session: none was "
            f"handed to the pipeline and the turn's metadata has no {KEY_SESSION_ID!r}"
        )


async def require_turn_id(req: SaveRequest, env: PipelineEnv) -> None:
    """An empty turn id is an error, never a default (distinct turns would merge)."""
    if not trim_space(req.turn_id):
        raise InvalidSaveError(
            f"{req.pipeline} save of conversation {req.conv_id!r} has an empty turn id; "
            "every inference must get a fresh turn id before it starts"
        )


async def default_turn_id(req: SaveRequest, env: PipelineEnv) -> None:
    """BUG VARIANT ``default-turn-id``: an empty turn id became the constant ``"turn"``."""
    if not trim_space(req.turn_id):
        req.turn_id = "turn"


def open_tool_calls(blocks: Sequence[Block]) -> list[Block]:
    """The tool calls of ``blocks`` no later ``tool_use`` answers (paired in order)."""
    open_calls: list[Block] = []
    for block in blocks:
        if block.kind == "tool_call":
            open_calls.append(block)
        elif block.kind == "tool_use" and open_calls:
            open_calls.pop(0)
    return open_calls


async def pair_tool_calls(req: SaveRequest, env: PipelineEnv) -> None:
    """A turn that ended mid tool round (failed, cancelled, interrupted) is saved with a
    result for every open tool call, saying it has none; a stored tool call is never left
    unpaired (a model API refuses such a history, so every later run would fail)."""
    missing = open_tool_calls(req.turn.blocks)
    if missing:
        status = req.turn.data.get("status", "ended")
        req.turn = req.turn.with_blocks(
            *(
                Block(
                    "tool_use", f"no result: the inference {status}", {**b.data, "synthetic": True}
                )
                for b in missing
            )
        )


async def keep_tool_calls_open(req: SaveRequest, env: PipelineEnv) -> None:
    """BUG VARIANT ``unpaired-tool-call``: the turn is saved as the engine left it, a tool
    call without its result included (letta #3250)."""


async def serialize(req: SaveRequest, env: PipelineEnv) -> None:
    """The payload is the whole turn: blocks, metadata and data."""
    req.payload = req.turn.serialize()


async def store_latency(req: SaveRequest, env: PipelineEnv) -> None:
    """The store takes its time before the write runs (``store_latency_ms``, virtual)."""
    if env.store_latency_ms:
        await env.sleep(env.store_latency_ms)


async def serialize_live(req: SaveRequest, env: PipelineEnv) -> None:
    """BUG VARIANT ``live-snapshot-payload``: the snapshot holds a reference to the live
    turn and is serialized only when the write runs (langgraph #8748), so a write that runs
    after the inference moved on stores a later phase's blocks."""
    req.payload = (req.live_turn or (lambda: req.turn))().serialize()


async def save_with_retry(req: SaveRequest, env: PipelineEnv) -> None:
    """Save through the store; retry transient failures with bounded exponential backoff."""
    event = "snapshot.save_retry" if req.pipeline == SNAPSHOT else "turn.persist_retry"
    while True:
        req.attempts += 1
        try:
            if env.store_latency_ms and req.attempts > 1:  # the first: stage store_latency
                await env.sleep(env.store_latency_ms)
            env.faults.check(
                "store.save", pipeline=req.pipeline, conv_id=req.conv_id, phase=req.phase
            )
            req.result = await env.store.save(
                req.conv_id,
                req.session_id,
                req.turn_id,
                req.phase,
                req.created_at_ms,
                req.payload,
                TurnSaveOptions(runtime_key=req.runtime_key, inference_id=req.inference_id),
            )
            return
        except TransientStoreError as exc:
            if req.attempts >= env.retry_attempts:
                raise
            backoff = env.retry_backoff_ms * 2 ** (req.attempts - 1)
            env.recorder.emit(
                event,
                **req.context(),
                attempt=req.attempts,
                error=str(exc),
                backoff_ms=backoff,
                pipeline=req.pipeline,
                carried_runtime_key=req.runtime_key,
                bound_runtime_key=req.bound_runtime_key,
            )
            await env.sleep(backoff)


# -- outcomes -------------------------------------------------------------------------

Outcome = Callable[[SaveRequest, PipelineEnv], None]


def record_saved(req: SaveRequest, env: PipelineEnv) -> None:
    assert req.result is not None
    extra: dict[str, Any] = {}
    if req.pipeline == FINAL:
        # A final turn saved with tool calls left open (only a bug variant does) says how
        # many, so the history alone shows what the stored payload holds.
        unpaired = len(open_tool_calls(req.turn.blocks))
        if unpaired:
            extra["open_tool_calls"] = unpaired
    env.recorder.emit(
        "snapshot.saved" if req.pipeline == SNAPSHOT else "turn.persisted",
        **{
            **req.context(),
            "runtime_key": req.result.runtime_key,
            "inference_id": req.result.inference_id,
        },
        carried_runtime_key=req.runtime_key,
        bound_runtime_key=req.bound_runtime_key,
        snapshot_id=req.result.snapshot_id,
        created_turn=req.result.created_turn,
        created_at_ms=req.created_at_ms,
        attempts=req.attempts,
        pipeline=req.pipeline,
        **extra,
    )


def surface_failure(req: SaveRequest, env: PipelineEnv) -> None:
    """A save that failed for good is recorded as a failure the run reports."""
    env.recorder.emit(
        "snapshot.save_failed" if req.pipeline == SNAPSHOT else "turn.persist_failed",
        **req.context(),
        error=str(req.error),
        error_type=type(req.error).__name__,
        attempts=req.attempts,
        pipeline=req.pipeline,
        surfaced=True,
        carried_runtime_key=req.runtime_key,
        bound_runtime_key=req.bound_runtime_key,
    )


def swallow_failure(req: SaveRequest, env: PipelineEnv) -> None:
    """BUG VARIANT ``swallow-snapshot-errors``: the failure is only a warning in the log."""
    env.recorder.emit(
        "snapshot.save_error_swallowed",
        **req.context(),
        error=str(req.error),
        error_type=type(req.error).__name__,
        attempts=req.attempts,
        pipeline=req.pipeline,
        carried_runtime_key=req.runtime_key,
        bound_runtime_key=req.bound_runtime_key,
    )


def drop_failure(req: SaveRequest, env: PipelineEnv) -> None:
    """BUG VARIANT ``final-on-success-only``: the final persister's error is dropped
    (``_ = persister.PersistTurn(...)`` in the real runner): not even a log line."""


# -- when a pipeline runs -------------------------------------------------------------

Guard = Callable[[SaveRequest], bool]


def always(req: SaveRequest) -> bool:
    """Every save request runs the pipeline."""
    return True


def completed_only(req: SaveRequest) -> bool:
    """BUG VARIANT ``final-on-success-only``: the real runner called its final persister
    only when the inference succeeded; a failed or cancelled turn was never saved final."""
    return req.turn.data.get("status") == "completed"


@attrs.frozen
class Pipeline:
    """An ordered list of stages plus when it runs and what to do with the outcome."""

    name: str
    stages: Sequence[Stage]
    on_saved: Outcome = record_saved
    on_failed: Outcome = surface_failure
    runs: Guard = always  # a request it refuses is not saved, and nothing is recorded

    async def __call__(self, req: SaveRequest, env: PipelineEnv) -> SaveRequest:
        if not self.runs(req):
            return req
        try:
            for stage in self.stages:
                await stage(req, env)
        except StoreError as exc:
            req.error = exc
            self.on_failed(req, env)
        else:
            self.on_saved(req, env)
        return req


def snapshot_hook(
    *,
    runtime: Stage = bound_runtime,
    turn_id: Stage = require_turn_id,
    on_failed: Outcome = surface_failure,
    payload: Stage = serialize,
) -> Pipeline:
    """The snapshot hook, called at every phase; arguments substitute single stages."""
    return Pipeline(
        SNAPSHOT,
        (
            stamp_time,
            session_from_metadata,
            turn_id,
            runtime,
            inference_id_from_metadata,
            store_latency,
            payload,
            save_with_retry,
        ),
        on_failed=on_failed,
    )


def final_persister(
    *,
    turn_id: Stage = require_turn_id,
    runs: Guard = always,
    on_failed: Outcome = surface_failure,
    tool_calls: Stage = pair_tool_calls,
) -> Pipeline:
    """The final persister, called once per inference whatever its outcome (its turn's
    ``data.status``); arguments substitute single stages, the guard or the outcome."""
    return Pipeline(
        FINAL,
        (
            stamp_time,
            session_from_metadata,
            turn_id,
            bound_runtime,
            inference_id_from_metadata,
            tool_calls,
            store_latency,
            serialize,
            save_with_retry,
        ),
        on_failed=on_failed,
        runs=runs,
    )
