"""The steps of a server's life around its conversations: a cold restart of the server
process, and scheduled events (reminders) that reach a conversation on their own.

Each is one :class:`sim.scenario.steps.Step` (its fields, parser, handler and renderer);
``docs/scenarios.md`` documents them.
"""

from __future__ import annotations

import attrs

from sim.runtime.conversation import Prompt
from sim.scenario.steps import (
    DAY_MS,
    WITHIN_MS,
    Field,
    Pairs,
    Step,
    StepEnv,
    StepFields,
    written,
)


@attrs.frozen
class RestartServer(Step):
    """A cold restart of the server process; the store outlives it.

    Every conversation's actor dies where it is: an in-flight inference stops without a
    final save (its prompt's outcome is ``interrupted``), queued prompts and pending
    background switches and scheduled events are lost (in memory). The process boots
    again with fresh in-memory counters and reopens every conversation from the store
    (same session, the pointer the index holds); the boot gives each interrupted turn its
    final save (``data.status: interrupted``) before the conversation takes messages.
    """

    key = "restart_server"

    @classmethod
    def from_yaml(cls, f: StepFields) -> RestartServer:
        return cls()

    def to_yaml(self) -> Pairs:
        return []  # written as restart_server: {}

    async def run(self, env: StepEnv) -> None:
        for _, task in env.background:  # the scheduler's timers die with the process
            task.cancel()
        for _, task in env.background:
            await task.finished.wait()
        env.background.clear()
        world = env.world
        await world.restart_server()
        for name in env.convs:
            env.convs[name] = world.conversations[env.conv_id(name)]


@attrs.frozen
class Schedule(Step):
    """A scheduled event (a reminder) that reaches a conversation later, on its own: it
    runs an inference with ``prompt``, like a message the user did not type."""

    key = "schedule"
    fields = (
        Field("conv", "conv", "the conversation the event reaches", required=True),
        Field(
            "turn",
            "turn",
            "a name for the turn it runs, unique within its conversation; later steps refer "
            "to it once it started",
        ),
        Field("prompt", "string", "what the event says (the turn's user block)", required=True),
        Field(
            "at",
            "delay",
            "when it fires: a number, that many virtual ms later; `random`, at a seeded "
            "random moment in [0, within_ms]; absent, now",
            high=DAY_MS,
        ),
        WITHIN_MS,
    )

    conv: str
    prompt: str
    turn: str | None = None
    at: int | str | None = None
    within_ms: int = 1000

    @classmethod
    def from_yaml(cls, f: StepFields) -> Schedule:
        conv = f.read("conv")
        label = f.new_turn("turn", conv) if "turn" in f else None
        at: int | str | None = f.get("at")
        return cls(
            conv=conv,
            prompt=f.read("prompt"),
            turn=label,
            at=at,
            within_ms=f.get("within_ms", 1000),
        )

    def to_yaml(self) -> Pairs:
        return written(
            ("conv", self.conv),
            ("turn", self.turn, None),
            ("prompt", self.prompt),
            ("at", self.at, None),
            ("within_ms", self.within_ms, 1000),
        )

    async def run(self, env: StepEnv) -> None:
        world = env.world
        if self.at == "random":
            rng = world.streams.stream(f"schedule/{self.conv}/{len(env.background)}")
            delay = rng.randint(0, self.within_ms)
        else:
            delay = int(self.at or 0)
        prompt = Prompt(world.kernel, self.prompt, None, self.turn)
        if self.turn:
            env.labels[(self.conv, self.turn)] = prompt

        async def fire() -> None:
            await world.sleep(delay)
            await env.convs[self.conv].deliver_scheduled(prompt)

        task = world.kernel.spawn(fire, name=f"{self.conv}/schedule@{delay}")
        env.background.append((self.conv, task))

    def conversation(self) -> str | None:
        return self.conv

    def turn_defined(self) -> str | None:
        return self.turn

    def simpler(self) -> Step | None:
        return attrs.evolve(self, at=None, within_ms=1000) if self.at is not None else None
