"""The director: plays a scenario's steps, in order, against a world.

It opens the scenario's conversations, logs each step as it starts (``step.started``),
lends each step what it may use (:class:`sim.scenario.steps.StepEnv`), turns a failed
expectation into a :class:`sim.scenario.result.Failure`, and at the end waits until every
conversation is idle. What each step does is the step's own :meth:`~sim.scenario.steps.
Step.run`.
"""

from __future__ import annotations

from sim.runtime.conversation import Conversation, Prompt
from sim.runtime.kernel import SimTask
from sim.runtime.world import World
from sim.scenario.model import Located, Scenario
from sim.scenario.result import Failure
from sim.scenario.steps import ExpectationFailed


class Director:
    """Plays a scenario's steps, in order, as the simulation's main task."""

    def __init__(self, world: World, scenario: Scenario) -> None:
        self.world = world
        self.scenario = scenario
        self.convs: dict[str, Conversation] = {}
        self.labels: dict[tuple[str, str], Prompt] = {}  # (conversation, turn label)
        self.background: list[tuple[str, SimTask]] = []
        self.failures: list[Failure] = []
        self.expected_failures: set[int] = set()
        self.step_at_seq: list[tuple[int, Located]] = []
        self.checks = 0
        self.current = 0  # index of the step being played

    def conv_id(self, name: str) -> str:
        return f"{self.scenario.name}.{name}"

    async def run(self) -> None:
        for spec in self.scenario.conversations:
            self.convs[spec.name] = self.world.open_conversation(
                self.conv_id(spec.name),
                profile=spec.profile,
                session_id=spec.session,
                session_from=spec.session_from,
                history=spec.history,
                durability=spec.durability,
            )
        for located in self.scenario.steps:
            record = self.world.recorder.emit(
                "step.started",
                step=located.index,
                kind=located.kind,
                line=located.where.line,
                **self._step_context(located),
            )
            self.step_at_seq.append((record.get("seq", 0), located))
            self.current = located.index
            if located.step.is_check:
                self.checks += 1
            try:
                await located.step.run(self)
            except ExpectationFailed as exc:
                self._fail(located, str(exc))
        await self.wait_idle("all")

    def _step_context(self, located: Located) -> dict[str, str]:
        """The conversation (and turn label) a step concerns, for its log events."""
        out: dict[str, str] = {}
        conv = located.step.conversation()
        if conv and conv != "all":  # `all` names every conversation, none in particular
            out["conv_id"] = self.conv_id(conv)
        turn = located.step.turn_defined() or located.step.turn_needed()
        if turn:
            out["turn"] = turn
        return out

    def _fail(self, located: Located, message: str, **fields: str) -> None:
        self.world.recorder.emit(
            "expectation.failed",
            step=located.index,
            kind=located.kind,
            message=message,
            line=located.where.line,
            **self._step_context(located),
            **fields,
        )
        self.failures.append(
            Failure(
                "expectation",
                located.kind,
                message,
                step=located.index,
                where=str(located.where),
                **fields,
            )
        )

    def step_for_seq(self, seq: int) -> Located | None:
        """The step that was running when history event ``seq`` happened."""
        found = None
        for start, located in self.step_at_seq:
            if start > seq:
                break
            found = located
        return found

    async def wait_idle(self, name: str) -> None:
        """Until conversation ``name`` (or ``all``) has nothing queued or running and its
        background switches fired."""
        while True:
            pending = [t for c, t in self.background if (name == "all" or c == name) and not t.done]
            for task in pending:
                await task.finished.wait()
            targets = self.convs.values() if name == "all" else [self.convs[name]]
            for c in targets:
                await c.wait_idle()
            if not any(c.busy for c in targets) and not any(
                not t.done for c, t in self.background if name == "all" or c == name
            ):
                return

    def prompt(self, conv: str, label: str) -> Prompt:
        """The prompt of conversation ``conv``'s turn ``label``; a failed expectation if it
        has not started yet."""
        prompt = self.labels[(conv, label)]
        if not prompt.started.is_set:
            raise ExpectationFailed(f"turn {label!r} has not started yet (add wait_idle)")
        return prompt
