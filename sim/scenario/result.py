"""What a scenario run reports: its failures, its figures and the command that replays it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from sim.printable import printable

#: Characters of an id shown in reports for people (the timeline shows as many).
SHORT_ID = 8


@attrs.frozen
class Failure:
    """One reason a scenario failed: an invariant, an expectation, or an error."""

    kind: str  # invariant | expectation | error
    name: str  # invariant name, step kind, or error type
    message: str
    conv_id: str = ""
    turn_id: str = ""
    phase: str = ""
    expected: str = ""
    actual: str = ""
    step: int = 0
    where: str = ""

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Failure:
        """The failure :meth:`to_json` wrote (a report read back by ``explore merge``)."""
        return cls(**{f.name: doc[f.name] for f in attrs.fields(cls) if f.name in doc})


@attrs.define
class ScenarioResult:
    """The outcome of one scenario run."""

    scenario: str
    path: str
    seed: int
    variants: tuple[str, ...]
    failures: list[Failure]
    turns: int
    switches: int
    checks: int
    virtual_ms: int
    wall_s: float
    events: list[dict[str, Any]] = attrs.field(repr=False, factory=list)
    db: str | None = None

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def replay(self) -> str:
        return replay_command(self.path, self.seed, self.variants)

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "path": self.path,
            "seed": self.seed,
            "variants": list(self.variants),
            "passed": self.passed,
            "turns": self.turns,
            "switches": self.switches,
            "checks": self.checks,
            "virtual_ms": self.virtual_ms,
            "wall_s": round(self.wall_s, 4),
            "failures": [f.to_json() for f in self.failures],
            "replay": self.replay,
            "db": self.db,
        }

    def describe(self) -> str:
        """A failure report for people: what broke, where, what caused it, how to replay.

        Ids are shortened to :data:`SHORT_ID` characters (``to_json`` has them whole) and
        every value is passed through :func:`sim.printable.printable`.
        """
        variant = f" [{'+'.join(self.variants)}]" if self.variants else ""
        state = "PASS" if self.passed else "FAIL"
        lines = [f"{state} {self.scenario}{variant} seed {self.seed} ({self.path})"]
        for f in self.failures:
            where = " ".join(
                x
                for x in (
                    f"conversation {f.conv_id}" if f.conv_id else "",
                    f"turn {f.turn_id[:SHORT_ID]}" if f.turn_id else "",
                    f"phase {f.phase}" if f.phase else "",
                )
                if x
            )
            head = f"  {f.kind} {f.name}" + (f" ({where})" if where else "")
            lines.append(f"{head}: {f.message}")
            if f.expected or f.actual:
                lines.append(f"    expected {f.expected or '-'}, actual {f.actual or '-'}")
            if f.step:
                lines.append(f"    caused by step {f.step} at {f.where}")
        if not self.passed:
            lines.append(f"  replay: {self.replay}")
        return "\n".join(printable(line) for line in lines)


def replay_command(path: str, seed: int, variants: Iterable[str]) -> str:
    """The ``turnsim run`` command line that replays a run exactly."""
    cmd = f"turnsim run {path} --seed {seed}"
    variants = tuple(variants)
    if variants:
        cmd += f" --variant {'+'.join(variants)}"
    return cmd
