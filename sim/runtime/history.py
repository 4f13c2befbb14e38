"""What a new inference starts from, and whose blocks are whose.

A conversation opened with ``history: true`` feeds its history into every inference: the
blocks of its latest stored ``final`` snapshot come first in the new turn, then the new
prompt. A ``send`` with ``resume`` continues a saved run instead: the checkpoint's blocks
come first. In both, each block produced by an inference is attributed to it (block
metadata ``inference_id`` and ``runtime_key``, and a stable block ``id``), so a carried
block can still be told apart from the new ones.

Each behaviour here is the correct one or a bug variant's substitute (the variants are
assembled in :mod:`sim.runtime.variants`):

* :func:`load_history` refuses to run on a history it could not load;
  :func:`load_history_or_empty` (``ignore-history-error``) runs with none;
* :func:`stamp_new_blocks` attributes only the blocks nobody attributed yet;
  :func:`stamp_every_block` (``stamp-every-block``) restamps every assistant block;
* :func:`fresh_turn_id` gives each inference the id minted for it;
  :func:`cloned_turn_id` (``clone-turn-id``) keeps the previous turn's;
* :func:`resume_on_copy` continues a checkpoint in a new turn;
  :func:`resume_in_place` (``resume-in-place``) appends to the checkpoint itself.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import attrs

from persisters.errors import StoreError, TransientStoreError, TurnsimError
from persisters.model import BLOCK_KINDS, FINAL, Block, Turn, TurnSnapshot

#: Block kinds an inference produces (the ones it attributes to itself).
PRODUCED = ("llm_text", "tool_call", "tool_use")
#: Block metadata keys of the attribution (and the block's own id).
BLOCK_ID, BLOCK_INFERENCE, BLOCK_RUNTIME = "id", "inference_id", "runtime_key"


class HistoryLoadError(TurnsimError):
    """The conversation's history could not be loaded; the inference must not start."""


class LoadsTurns(Protocol):
    async def load_latest_turn(self, conv_id: str, phase: str) -> TurnSnapshot | None: ...


class HistoryEnv(Protocol):
    """What loading a history uses: the store, the fault plan, the recorder, the retry
    settings and virtual time."""

    @property
    def store(self) -> LoadsTurns: ...

    @property
    def faults(self) -> Any: ...

    @property
    def recorder(self) -> Any: ...

    retry_attempts: int
    retry_backoff_ms: int

    async def sleep(self, ms: int) -> None: ...


def blocks_of_payload(payload: str) -> tuple[Block, ...]:
    """The blocks of a stored turn payload (unknown kinds and undecodable payloads: none)."""
    try:
        decoded = json.loads(payload)
    except (ValueError, RecursionError):
        return ()
    raw = decoded.get("blocks") if isinstance(decoded, dict) else None
    out = []
    for b in raw if isinstance(raw, list) else ():
        if isinstance(b, dict) and b.get("kind") in BLOCK_KINDS:
            data = b.get("data")
            out.append(
                Block(b["kind"], str(b.get("text", "")), data if isinstance(data, dict) else {})
            )
    return tuple(out)


def turn_of_snapshot(snapshot: TurnSnapshot) -> Turn:
    """A stored snapshot as the turn it holds (blocks, metadata, data)."""
    try:
        decoded = json.loads(snapshot.payload)
    except (ValueError, RecursionError):
        decoded = {}
    decoded = decoded if isinstance(decoded, dict) else {}
    metadata, data = decoded.get("metadata"), decoded.get("data")
    return Turn(
        id=snapshot.turn_id,
        blocks=blocks_of_payload(snapshot.payload),
        metadata=metadata if isinstance(metadata, dict) else {},
        data=data if isinstance(data, dict) else {},
    )


# -- loading the history ---------------------------------------------------------------

LoadHistory = Callable[[HistoryEnv, str, str], Awaitable[tuple[Block, ...]]]


async def _latest_final(env: HistoryEnv, conv_id: str) -> tuple[Block, ...]:
    """One attempt: the fault point ``history.load``, then the latest stored final."""
    env.faults.check("history.load", conv_id=conv_id, phase=FINAL)
    latest = await env.store.load_latest_turn(conv_id, FINAL)
    return blocks_of_payload(latest.payload) if latest is not None else ()


async def load_history(env: HistoryEnv, conv_id: str, session_id: str) -> tuple[Block, ...]:
    """The conversation's history: the blocks of its latest stored final snapshot.

    Transient store errors are retried like saves; a load that fails for good raises
    :class:`HistoryLoadError` (the inference is refused, never run on an empty history).
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return await _latest_final(env, conv_id)
        except TransientStoreError as exc:
            if attempt >= env.retry_attempts:
                raise HistoryLoadError(
                    f"history of {conv_id!r} could not be loaded: {exc}"
                ) from None
            await env.sleep(env.retry_backoff_ms * 2 ** (attempt - 1))
        except StoreError as exc:
            raise HistoryLoadError(f"history of {conv_id!r} could not be loaded: {exc}") from None


async def load_history_or_empty(
    env: HistoryEnv, conv_id: str, session_id: str
) -> tuple[Block, ...]:
    """BUG VARIANT ``ignore-history-error``: a failed load is a warning and the inference
    runs with an empty history (pinocchio eee44ff2)."""
    try:
        return await _latest_final(env, conv_id)
    except StoreError as exc:
        env.recorder.emit(
            "history.load_error_ignored",
            conv_id=conv_id,
            session_id=session_id,
            error=str(exc),
            error_type=type(exc).__name__,
        )
        return ()


# -- attributing blocks ----------------------------------------------------------------

Stamp = Callable[[Turn, int, str, str], Turn]


def _stamped(block: Block, ordinal: int, inference_id: str, runtime_key: str) -> Block:
    data: dict[str, Any] = dict(block.data)
    data.setdefault(BLOCK_ID, f"{inference_id}/{ordinal}")  # identity: never restamped
    if block.kind in PRODUCED:
        data[BLOCK_INFERENCE], data[BLOCK_RUNTIME] = inference_id, runtime_key
    return attrs.evolve(block, data=data) if data != block.data else block


def stamp_new_blocks(turn: Turn, carried: int, inference_id: str, runtime_key: str) -> Turn:
    """Attribute the blocks of this inference (after the ``carried`` ones it was fed);
    carried blocks keep whatever attribution they have."""
    own = tuple(
        _stamped(b, i, inference_id, runtime_key) for i, b in enumerate(turn.blocks) if i >= carried
    )
    return attrs.evolve(turn, blocks=turn.blocks[:carried] + own)


def stamp_every_block(turn: Turn, carried: int, inference_id: str, runtime_key: str) -> Turn:
    """BUG VARIANT ``stamp-every-block``: the inference's result metadata is stamped onto
    every assistant block of the turn, earlier turns' answers included (geppetto 5226a254)."""
    blocks = tuple(_stamped(b, i, inference_id, runtime_key) for i, b in enumerate(turn.blocks))
    return attrs.evolve(turn, blocks=blocks)


def attribution(block: Block | Mapping[str, Any]) -> tuple[str, str, str]:
    """``(id, inference_id, runtime_key)`` of a block ('' where absent)."""
    data = block.data if isinstance(block, Block) else block
    return tuple(str(data.get(k, "")) for k in (BLOCK_ID, BLOCK_INFERENCE, BLOCK_RUNTIME))  # type: ignore[return-value]


# -- the turn id of the next inference ---------------------------------------------------

NextTurnId = Callable[[str, str], str]


def fresh_turn_id(minted: str, previous: str) -> str:
    """Every inference runs under the turn id minted for it."""
    return minted


def cloned_turn_id(minted: str, previous: str) -> str:
    """BUG VARIANT ``clone-turn-id``: the new run is a clone of the previous turn and keeps
    its id (geppetto e04dce4d); only the first inference gets a fresh one."""
    return previous or minted


# -- resuming a saved run -----------------------------------------------------------------

Resume = Callable[[Turn, Turn], Turn]


def resume_on_copy(checkpoint: Turn, fresh: Turn) -> Turn:
    """The resumed run is a new turn that starts from a copy of the checkpoint's blocks;
    the checkpoint stays as it was saved."""
    return attrs.evolve(fresh, blocks=checkpoint.blocks + fresh.blocks)


def resume_in_place(checkpoint: Turn, fresh: Turn) -> Turn:
    """BUG VARIANT ``resume-in-place``: the run adopts the checkpoint's state by reference
    and appends to it (openai-agents-python PR #4251): same turn, same metadata."""
    return checkpoint.with_blocks(*fresh.blocks)


__all__ = [
    "HistoryLoadError",
    "attribution",
    "blocks_of_payload",
    "cloned_turn_id",
    "fresh_turn_id",
    "load_history",
    "load_history_or_empty",
    "resume_in_place",
    "resume_on_copy",
    "stamp_every_block",
    "stamp_new_blocks",
    "turn_of_snapshot",
]
