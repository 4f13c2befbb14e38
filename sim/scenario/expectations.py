"""The ``expect_*`` steps: what must hold at that point of a run, read from the store and
the history as reports read them. A failed one is reported at its step; the run goes on.

Each is one :class:`sim.scenario.steps.Step` (its fields, parser, handler and renderer);
``docs/scenarios.md`` documents them.
"""

from __future__ import annotations

import attrs

from persisters.model import MAX_LIMIT, TurnQuery
from sim.events import SAVE_FAILED
from sim.scenario.steps import (
    PIPELINES,
    ExpectationFailed,
    Field,
    Pairs,
    Step,
    StepEnv,
    StepFields,
    written,
)

#: How a prompt's inference ended; ``interrupted`` (in flight) and ``lost`` (queued): by a
#: server restart (``restart_server``).
OUTCOMES = ("completed", "failed", "cancelled", "refused", "interrupted", "lost")
CONV = Field(
    "conv", "conv", "the conversation (a template's name: each of its conversations)", required=True
)


@attrs.frozen
class ExpectTurn(Step):
    """A turn's stored snapshots, as reports read them, show one runtime and these phases."""

    key = "expect_turn"
    fields = (
        CONV,
        Field("turn", "turn", "the turn (named by an earlier send)", required=True),
        Field("runtime_key", "string", "the runtime every stored snapshot shows"),
        Field("phases", "phases", "exactly the set of stored phases"),
        Field("outcome", "choice", "how its inference ended", choices=OUTCOMES),
        Field("session", "string", "the session every stored snapshot is under"),
    )
    is_check = True

    conv: str
    turn: str
    runtime_key: str | None = None
    phases: tuple[str, ...] | None = None
    outcome: str | None = None
    session: str | None = None  # the session every stored snapshot is under

    @classmethod
    def from_yaml(cls, f: StepFields) -> ExpectTurn:
        conv = f.read("conv")
        phases = f.get("phases")
        return cls(
            conv=conv,
            turn=f.known_turn("turn", conv),
            runtime_key=f.get("runtime_key"),
            phases=phases,
            outcome=f.get("outcome"),
            session=f.get("session"),
        )

    def to_yaml(self) -> Pairs:
        return written(
            ("conv", self.conv),
            ("turn", self.turn),
            ("runtime_key", self.runtime_key, None),
            ("phases", self.phases, None),
            ("outcome", self.outcome, None),
            ("session", self.session, None),
        )

    async def run(self, env: StepEnv) -> None:
        world = env.world
        conv = env.convs[self.conv]
        prompt = env.prompt(self.conv, self.turn)
        problems = []
        if self.outcome is not None and prompt.outcome != self.outcome:
            problems.append(f"outcome is {prompt.outcome}, expected {self.outcome}")
        snaps = (
            await world.store.list(
                TurnQuery(conv_id=conv.conv_id, turn_id=prompt.turn_id, limit=MAX_LIMIT)
            )
            if prompt.turn_id
            else []
        )
        record = await world.index.get(conv.conv_id)
        shown = [world.build.read_path.view(s, record) for s in snaps]
        if self.runtime_key is not None:
            runtimes = sorted({s.runtime_key for s in shown})
            if not snaps:
                problems.append(f"no stored snapshot, expected runtime {self.runtime_key}")
            elif runtimes != [self.runtime_key]:
                problems.append(
                    f"runtime reported as {'/'.join(runtimes)}, expected {self.runtime_key}"
                )
        if self.phases is not None:
            phases = sorted({s.phase for s in snaps})
            if phases != sorted(set(self.phases)):
                problems.append(f"stored phases {phases}, expected {sorted(set(self.phases))}")
        if self.session is not None:
            sessions = sorted({s.session_id for s in snaps})
            if sessions != [self.session]:
                found = "/".join(repr(s) for s in sessions) or "no stored snapshot"
                problems.append(f"stored under session {found}, expected {self.session!r}")
        if problems:
            raise ExpectationFailed(f"turn {self.turn!r}: " + "; ".join(problems))

    def conversation(self) -> str | None:
        return self.conv

    def turn_needed(self) -> str | None:
        return self.turn


@attrs.frozen
class ExpectTurnCount(Step):
    """A conversation has this many stored turns."""

    key = "expect_turn_count"
    fields = (
        CONV,
        Field(
            "count", "integer", "stored turns of the conversation", required=True, high=10_000_000
        ),
    )
    is_check = True

    conv: str
    count: int

    @classmethod
    def from_yaml(cls, f: StepFields) -> ExpectTurnCount:
        return cls(f.read("conv"), f.read("count"))

    def to_yaml(self) -> Pairs:
        return [("conv", self.conv), ("count", self.count)]

    async def run(self, env: StepEnv) -> None:
        turns = await env.world.store.list_turns(env.conv_id(self.conv))
        if len(turns) != self.count:
            raise ExpectationFailed(
                f"conversation {self.conv!r} has {len(turns)} stored turns, expected {self.count}"
            )

    def conversation(self) -> str | None:
        return self.conv


@attrs.frozen
class ExpectConversation(Step):
    """A conversation's index row holds this pointer and session."""

    key = "expect_conversation"
    fields = (
        CONV,
        Field("current_runtime_key", "text", "the pointer in the index row ('' for none)"),
        Field("session", "string", "the session in the index row"),
    )
    is_check = True

    conv: str
    current_runtime_key: str | None = None
    session: str | None = None

    @classmethod
    def from_yaml(cls, f: StepFields) -> ExpectConversation:
        return cls(f.read("conv"), f.get("current_runtime_key"), f.get("session"))

    def to_yaml(self) -> Pairs:
        return written(
            ("conv", self.conv),
            ("current_runtime_key", self.current_runtime_key, None),
            ("session", self.session, None),
        )

    async def run(self, env: StepEnv) -> None:
        record = await env.world.index.get(env.conv_id(self.conv))
        if record is None:
            raise ExpectationFailed(f"conversation {self.conv!r} has no index row")
        problems = []
        if (
            self.current_runtime_key is not None
            and record.current_runtime_key != self.current_runtime_key
        ):
            problems.append(
                f"current_runtime_key is {record.current_runtime_key!r}, expected "
                f"{self.current_runtime_key!r}"
            )
        if self.session is not None and record.session_id != self.session:
            problems.append(f"session is {record.session_id!r}, expected {self.session!r}")
        if problems:
            raise ExpectationFailed(f"conversation {self.conv!r}: " + "; ".join(problems))

    def conversation(self) -> str | None:
        return self.conv


@attrs.frozen
class ExpectFailure(Step):
    """Save failures surfaced so far that match (then expected by ``nothing-lost``)."""

    key = "expect_failure"
    fields = (
        Field("conv", "conv", "only failures of this conversation"),
        Field("turn", "turn", "only failures of this turn (needs conv)"),
        Field("phase", "phase", "only failures of this phase"),
        Field("pipeline", "choice", "only failures of this pipeline", choices=PIPELINES),
        Field("count", "integer", "exactly this many (default: at least one)", high=1_000_000),
        Field("contains", "string", "only failures whose error contains this text"),
    )
    is_check = True

    conv: str | None = None
    turn: str | None = None
    phase: str | None = None
    pipeline: str | None = None
    count: int | None = None  # None: at least one
    contains: str | None = None

    @classmethod
    def from_yaml(cls, f: StepFields) -> ExpectFailure:
        conv = f.get("conv")
        turn = None
        if "turn" in f:
            if conv is None:
                raise f.error("turn", "needs conv as well")
            turn = f.known_turn("turn", conv)
        return cls(
            conv=conv,
            turn=turn,
            phase=f.get("phase"),
            pipeline=f.get("pipeline"),
            count=f.get("count"),
            contains=f.get("contains"),
        )

    def to_yaml(self) -> Pairs:
        return written(
            ("conv", self.conv, None),
            ("turn", self.turn, None),
            ("phase", self.phase, None),
            ("pipeline", self.pipeline, None),
            ("count", self.count, None),
            ("contains", self.contains, None),
        )

    async def run(self, env: StepEnv) -> None:
        turn_id = env.prompt(self.conv, self.turn).turn_id if self.conv and self.turn else None
        conv_id = env.conv_id(self.conv) if self.conv else None
        matched = [
            e
            for e in env.world.recorder.select(*SAVE_FAILED)
            if (conv_id is None or e["conv_id"] == conv_id)
            and (turn_id is None or e["turn_id"] == turn_id)
            and (self.phase is None or e["phase"] == self.phase)
            and (self.pipeline is None or e["pipeline"] == self.pipeline)
            and (self.contains is None or self.contains in e["error"])
        ]
        env.expected_failures.update(e["seq"] for e in matched)
        if self.count is None and not matched:
            raise ExpectationFailed("expected a surfaced save failure, but none was reported")
        if self.count is not None and len(matched) != self.count:
            raise ExpectationFailed(
                f"expected {self.count} surfaced save failure(s), {len(matched)} reported"
            )

    def conversation(self) -> str | None:
        return self.conv

    def turn_needed(self) -> str | None:
        return self.turn
