"""The fake inference engine: deterministic, scripted per profile, virtual latency."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from persisters.model import FINAL, POST_INFERENCE, POST_TOOLS, PRE_INFERENCE, Block, Turn
from sim.runtime.faults import FaultPlan
from sim.runtime.profiles import Profile
from sim.seeding import RandomStreams

Hook = Callable[[str, Turn], Awaitable[None]]


class EngineEnv(Protocol):
    """What the engine may use: virtual time, the fault plan and the seeded streams."""

    faults: FaultPlan
    streams: RandomStreams

    async def sleep(self, ms: int) -> None: ...


class Engine(Protocol):
    """An inference engine: runs one turn, calling ``hook(phase, turn)`` at each phase."""

    async def run(
        self, turn: Turn, profile: Profile, conv_id: str, hook: Hook, turn_no: int = 0
    ) -> Turn: ...


class FakeEngine:
    """Produces blocks like a tool-using LLM loop and fires the snapshot hook at each phase.

    Phases: ``pre_inference``; the model call (``latency_ms``); ``post_inference``; then per
    tool round the tool (``tool_latency_ms``), ``post_tools`` and another model call;
    finally ``final``. The fault point ``engine.infer`` is checked before each phase.
    """

    def __init__(self, env: EngineEnv) -> None:
        self._env = env

    def _latency(self, conv_id: str, base: int, jitter: int) -> int:
        if not jitter:
            return base
        offset = self._env.streams.randint(f"jitter/{conv_id}", -jitter, jitter)
        return max(0, base + offset)

    def _reply(self, profile: Profile, turn_no: int) -> str:
        if profile.replies:
            return profile.replies[turn_no % len(profile.replies)]
        return f"[{profile.runtime_key}] reply"

    async def run(
        self, turn: Turn, profile: Profile, conv_id: str, hook: Hook, turn_no: int = 0
    ) -> Turn:
        env = self._env
        conv = conv_id

        async def phase(name: str, current: Turn) -> None:
            env.faults.check("engine.infer", conv_id=conv, phase=name)
            await hook(name, current)

        await phase(PRE_INFERENCE, turn)
        await env.sleep(self._latency(conv, profile.latency_ms, profile.jitter_ms))
        rounds = profile.tool_rounds
        if rounds:
            turn = turn.with_blocks(Block("tool_call", "lookup", {"round": 1}))
        else:
            turn = turn.with_blocks(Block("llm_text", self._reply(profile, turn_no)))
        await phase(POST_INFERENCE, turn)
        for r in range(1, rounds + 1):
            await env.sleep(self._latency(conv, profile.tool_latency_ms, profile.jitter_ms))
            turn = turn.with_blocks(Block("tool_use", f"result {r}", {"round": r}))
            await phase(POST_TOOLS, turn)
            await env.sleep(self._latency(conv, profile.latency_ms, profile.jitter_ms))
            if r < rounds:
                turn = turn.with_blocks(Block("tool_call", "lookup", {"round": r + 1}))
            else:
                turn = turn.with_blocks(Block("llm_text", self._reply(profile, turn_no)))
        await phase(FINAL, turn)
        return turn
