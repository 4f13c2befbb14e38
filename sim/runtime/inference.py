"""Where a turn's runtime is bound (rule 3), and how one inference reaches the pipelines.

:func:`bind` is the one place a turn gets its runtime: the conversation's profile is
resolved when the inference *starts*, ids are minted, and the result is a frozen
:class:`Binding` that nothing changes afterwards. :func:`execute` runs the engine under
that binding: every phase goes through the snapshot hook and the finished turn through the
final persister, each save carrying the bound runtime (a bug variant may swap in a stage
that reads the conversation's current pointer instead, which is exactly the real system's
late-bound hook).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import attrs

from persisters.model import FINAL, KEY_INFERENCE_ID, KEY_RUNTIME, KEY_SESSION_ID, Block, Turn
from persisters.pipeline import Pipeline, PipelineEnv, SaveRequest
from sim.errors import NoRuntimeError
from sim.runtime.engine import Engine
from sim.runtime.faults import InjectedInferenceError
from sim.runtime.kernel import Kernel, SimCancelled, SimTask
from sim.runtime.profiles import Profile, ProfileRegistry
from sim.runtime.variants import Build
from sim.seeding import IdSource


@attrs.frozen
class Binding:
    """What an inference is bound to when it starts (rule 3); never changes afterwards."""

    conv_id: str
    session_id: str
    turn_id: str
    inference_id: str
    runtime_key: str
    profile: str
    started_at_ms: int
    #: False: the pipelines are handed no session and read the turn's metadata session,
    #: as the real persisters did for a conversation without one (``session_from``).
    hand_session: bool = True
    #: The turn carries earlier blocks (history or a resumed checkpoint): every save
    #: attributes blocks to the inference that produced them (:mod:`sim.runtime.history`).
    attributed: bool = False
    #: "async": phase snapshots are written in the background while the inference goes
    #: on (the final save waits for them); "sync": the engine waits for each.
    durability: str = "sync"
    #: How many blocks the turn was fed (history or checkpoint) before its own prompt.
    carried: int = 0


class InferenceEnv(PipelineEnv, Protocol):
    """What binding and running one inference may use: the pipelines' environment plus
    the profiles, the id source, the engine and the build (which stages run)."""

    profiles: ProfileRegistry
    ids: IdSource
    engine: Engine
    build: Build
    kernel: Kernel
    #: The server process's in-memory counters (fresh at every boot).
    counters: dict[str, int]


def bind(
    env: InferenceEnv,
    conv_id: str,
    session_id: str,
    slug: str,
    *,
    hand_session: bool = True,
    previous_turn_id: str = "",
    attributed: bool = False,
    durability: str = "sync",
) -> Binding:
    """Bind an inference that starts now: resolve the profile's runtime, mint its ids.

    Raises :class:`NoRuntimeError` when the profile resolves to no runtime (rule 8): such
    a conversation cannot start an inference. Draws the turn id, then the inference id,
    from the conversation's id stream (the order is part of a seed's history). The turn's
    metadata always carries ``session_id``; ``hand_session=False`` hands the pipelines none.
    """
    runtime_key = env.profiles.resolve(slug)
    if not runtime_key:
        raise NoRuntimeError(
            f"conversation {conv_id!r}: profile {slug!r} resolves to no runtime; "
            "an inference cannot start without one (give the profile a runtime_key)"
        )
    minted = env.build.turn_ids(env, conv_id) if env.build.mint_turn_ids else ""
    turn_id = env.build.next_turn_id(minted, previous_turn_id)
    inference_id = env.ids.new("inference", conv_id)
    return Binding(
        conv_id,
        session_id,
        turn_id,
        inference_id,
        runtime_key,
        slug,
        env.now_ms(),
        hand_session=hand_session,
        attributed=attributed,
        durability=durability,
    )


def first_turn(binding: Binding, text: str, history: tuple[Block, ...] = ()) -> Turn:
    """The turn as the inference starts: the history it was fed, the user's prompt, the
    bound metadata."""
    return Turn(
        id=binding.turn_id,
        blocks=(*history, Block("user", text)),
        metadata={
            KEY_SESSION_ID: binding.session_id,
            KEY_INFERENCE_ID: binding.inference_id,
            KEY_RUNTIME: binding.runtime_key,
        },
        data={"profile": binding.profile},
    )


async def save(
    env: PipelineEnv,
    pipeline: Pipeline,
    binding: Binding,
    phase: str,
    turn: Turn,
    current_runtime: Callable[[], str],
    live_turn: Callable[[], Turn] | None = None,
) -> None:
    """Send one save of this inference through a pipeline, the bound runtime with it.

    ``current_runtime`` reads the conversation's pointer *now*; only the late-bound bug
    variant's stage uses it.
    """
    request = SaveRequest(
        pipeline=pipeline.name,
        conv_id=binding.conv_id,
        session_id=binding.session_id if binding.hand_session else "",
        turn_id=binding.turn_id,
        phase=phase,
        turn=turn,
        bound_runtime_key=binding.runtime_key,
        current_runtime=current_runtime,
        live_turn=live_turn,
    )
    await pipeline(request, env)


async def execute(
    env: InferenceEnv,
    binding: Binding,
    turn: Turn,
    profile: Profile,
    turn_no: int,
    current_runtime: Callable[[], str],
    interrupted: Callable[[], bool] = lambda: False,
) -> tuple[str, str | None]:
    """Run the engine under ``binding``; return ``(outcome, error)``.

    Each phase is saved by the snapshot hook (the build's write policy says how the engine
    waits for it); the final persister then saves the last turn seen, whatever the outcome
    (``completed``, ``failed`` or ``cancelled``): a failed or cancelled inference is still
    recorded under its bound runtime. A cancellation while ``interrupted()`` holds is the
    server process dying (a cold restart): nothing more runs, the cancellation propagates.
    """
    last = [turn]
    pending: list[SimTask] = []  # snapshot writes a variant's policy left running
    background: list[SimTask] = []  # a declared write-behind's (durability: async)

    def attribute(current: Turn) -> Turn:
        if not binding.attributed:
            return current
        return env.build.stamp_blocks(
            current, binding.carried, binding.inference_id, binding.runtime_key
        )

    async def hook(phase: str, current: Turn) -> None:
        last[0] = current = attribute(current)
        if binding.durability == "async":
            background.append(
                env.kernel.spawn(
                    save,
                    env,
                    env.build.snapshot_hook,
                    binding,
                    phase,
                    current,
                    current_runtime,
                    lambda: last[0],
                    name=f"{binding.conv_id}/snapshot-writer",
                )
            )
            return

        async def write() -> None:
            await save(env, env.build.snapshot_hook, binding, phase, current, current_runtime)

        await env.build.snapshot_writes(env, phase, write, pending)

    outcome: str = "completed"
    error: str | None = None
    try:
        last[0] = attribute(await env.engine.run(turn, profile, binding.conv_id, hook, turn_no))
    except SimCancelled:
        if interrupted():
            for task in (*pending, *background):
                task.cancel()
            raise
        outcome = "cancelled"
    except InjectedInferenceError as exc:
        outcome, error = "failed", str(exc)
    await _settled(background)  # the final save comes after every phase snapshot
    if env.build.final_waits_for_writes:
        await _settled(pending)
    final_turn = last[0].with_data(status=outcome)
    await save(env, env.build.final_persister, binding, FINAL, final_turn, current_runtime)
    await _settled(pending)  # the inference ends once every write of it has settled
    return outcome, error


async def _settled(pending: list[SimTask]) -> None:
    for task in pending:
        await task.finished.wait()


__all__ = ["Binding", "InferenceEnv", "bind", "execute", "first_turn", "save"]
