"""The fake inference engine: deterministic, scripted per profile, virtual latency."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import attrs

from persisters.model import FINAL, POST_INFERENCE, POST_TOOLS, PRE_INFERENCE, Block, Turn
from sim.runtime.profiles import Profile

if TYPE_CHECKING:
    from sim.runtime.world import World

Hook = Callable[[str, Turn], Awaitable[None]]


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


class FakeEngine:
    """Produces blocks like a tool-using LLM loop and fires the snapshot hook at each phase.

    Phases: ``pre_inference``; the model call (``latency_ms``); ``post_inference``; then per
    tool round the tool (``tool_latency_ms``), ``post_tools`` and another model call;
    finally ``final``. The fault point ``engine.infer`` is checked before each phase.
    """

    def __init__(self, world: World) -> None:
        self._world = world

    def _latency(self, conv_id: str, base: int, jitter: int) -> int:
        if not jitter:
            return base
        offset = self._world.streams.randint(f"jitter/{conv_id}", -jitter, jitter)
        return max(0, base + offset)

    def _reply(self, profile: Profile, turn_no: int) -> str:
        if profile.replies:
            return profile.replies[turn_no % len(profile.replies)]
        return f"[{profile.runtime_key}] reply"

    async def run(
        self, turn: Turn, profile: Profile, binding: Binding, hook: Hook, turn_no: int = 0
    ) -> Turn:
        world = self._world
        conv = binding.conv_id

        async def phase(name: str, current: Turn) -> None:
            world.faults.check("engine.infer", conv_id=conv, phase=name)
            await hook(name, current)

        await phase(PRE_INFERENCE, turn)
        await world.sleep(self._latency(conv, profile.latency_ms, profile.jitter_ms))
        rounds = profile.tool_rounds
        if rounds:
            turn = turn.with_blocks(Block("tool_call", "lookup", {"round": 1}))
        else:
            turn = turn.with_blocks(Block("llm_text", self._reply(profile, turn_no)))
        await phase(POST_INFERENCE, turn)
        for r in range(1, rounds + 1):
            await world.sleep(self._latency(conv, profile.tool_latency_ms, profile.jitter_ms))
            turn = turn.with_blocks(Block("tool_use", f"result {r}", {"round": r}))
            await phase(POST_TOOLS, turn)
            await world.sleep(self._latency(conv, profile.latency_ms, profile.jitter_ms))
            if r < rounds:
                turn = turn.with_blocks(Block("tool_call", "lookup", {"round": r + 1}))
            else:
                turn = turn.with_blocks(Block("llm_text", self._reply(profile, turn_no)))
        await phase(FINAL, turn)
        return turn
