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

    The profile's ``phase_pattern`` decides the hook calls (both produce the same blocks
    in the same virtual time). ``turnsim``: ``pre_inference``; the model call
    (``latency_ms``); ``post_inference``; then per tool round the tool
    (``tool_latency_ms``), ``post_tools`` and another model call; finally ``final``.
    ``toolloop`` (geppetto's tool loop): ``pre_inference`` and ``post_inference`` around
    every model call, ``post_tools`` after each tool, and no ``final``. The fault point
    ``engine.infer`` is checked before each phase (under ``toolloop`` also once at the end,
    as phase ``final``, with no hook call).
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

        if profile.phase_pattern == "toolloop":
            return await self._tool_loop(turn, profile, conv_id, phase, turn_no)
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

    async def _tool_loop(
        self,
        turn: Turn,
        profile: Profile,
        conv_id: str,
        phase: Callable[[str, Turn], Awaitable[None]],
        turn_no: int,
    ) -> Turn:
        """geppetto's tool loop: a hook pair around each model call, none at ``final``."""
        env = self._env
        rounds = profile.tool_rounds
        for r in range(1, rounds + 2):
            await phase(PRE_INFERENCE, turn)
            await env.sleep(self._latency(conv_id, profile.latency_ms, profile.jitter_ms))
            if r <= rounds:
                turn = turn.with_blocks(Block("tool_call", "lookup", {"round": r}))
            else:
                turn = turn.with_blocks(Block("llm_text", self._reply(profile, turn_no)))
            await phase(POST_INFERENCE, turn)
            if r > rounds:
                break
            await env.sleep(self._latency(conv_id, profile.tool_latency_ms, profile.jitter_ms))
            turn = turn.with_blocks(Block("tool_use", f"result {r}", {"round": r}))
            await phase(POST_TOOLS, turn)
        env.faults.check("engine.infer", conv_id=conv_id, phase=FINAL)  # the loop's return
        return turn
