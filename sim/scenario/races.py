"""Race coverage ("sometimes"): a scenario states that a race window must be hit.

``expect_race: {conv: c1, kind: switch_in_flight}`` fails the run when, by the time the
step runs, no profile switch of ``c1`` happened while one of its inferences was in flight:
a race test can then never pass without having raced. With ``min_seeds: N`` a run that
misses the window does not fail; ``turnsim explore`` requires at least ``N`` of its seeds
to hit it and reports, per scenario, how many seeds hit each declared window (FoundationDB's
``TEST()`` / ``sometimes`` coverage macros).

The step records what it saw as a ``race.checked`` event (``window``, ``hits``), which is
all explore reads back from a seed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from sim.scenario.expectations import CONV
from sim.scenario.steps import ExpectationFailed, Field, Pairs, Step, StepEnv, StepFields, written

#: Race window kind -> when it is hit (docs/scenarios.md).
RACE_KINDS: dict[str, str] = {
    "switch_in_flight": (
        "a profile switch of the conversation while one of its inferences is in flight"
    ),
}

#: The event the step records.
RACE_EVENT = "race.checked"


def window_name(kind: str, conv: str) -> str:
    """How a declared window is named in reports: ``switch_in_flight@c1``."""
    return f"{kind}@{conv}"


def window_hits(events: Iterable[dict[str, Any]], conv_id: str, kind: str) -> list[int]:
    """The seqs of the events that hit the window ``kind`` of ``conv_id``."""
    if kind != "switch_in_flight":  # pragma: no cover - the step's choices are RACE_KINDS
        raise ValueError(f"unknown race window kind {kind!r}")
    return [
        e["seq"]
        for e in events
        if e["event"] == "profile.switched"
        and e["conv_id"] == conv_id
        and e.get("inflight_inference_id")
    ]


@attrs.frozen
class ExpectRace(Step):
    """A race window that must have been hit by now (``min_seeds``: by that many seeds of
    an exploration instead of by every run)."""

    key = "expect_race"
    fields = (
        CONV,
        Field("kind", "choice", "the race window", required=True, choices=tuple(RACE_KINDS)),
        Field(
            "min_seeds",
            "integer",
            "explore: at least this many seeds must hit it (a run that misses it then "
            "does not fail)",
            low=1,
        ),
    )
    is_check = True

    conv: str
    kind: str
    min_seeds: int | None = None

    @classmethod
    def from_yaml(cls, f: StepFields) -> ExpectRace:
        return cls(conv=f.read("conv"), kind=f.read("kind"), min_seeds=f.get("min_seeds"))

    def to_yaml(self) -> Pairs:
        return written(
            ("conv", self.conv, None),
            ("kind", self.kind, None),
            ("min_seeds", self.min_seeds, None),
        )

    @property
    def window(self) -> str:
        return window_name(self.kind, self.conv)

    async def run(self, env: StepEnv) -> None:
        hits = window_hits(env.world.recorder.events, env.conv_id(self.conv), self.kind)
        env.world.recorder.emit(
            RACE_EVENT,
            conv_id=env.conv_id(self.conv),
            window=self.window,
            kind=self.kind,
            hits=len(hits),
            first_hit_seq=hits[0] if hits else 0,
            min_seeds=self.min_seeds,
        )
        if not hits and self.min_seeds is None:
            raise ExpectationFailed(
                f"the race window {self.kind} of {self.conv} was never hit in this run "
                f"({RACE_KINDS[self.kind]} never happened): the race test would pass "
                "without having raced. Make the timing overlap (a longer inference, an "
                "earlier switch) or give min_seeds and explore"
            )

    def conversation(self) -> str | None:
        return self.conv


def declared_windows(steps: Iterable[Any]) -> dict[str, int]:
    """Window -> the seeds an exploration needs to hit it (0: every seed must)."""
    out: dict[str, int] = {}
    for located in steps:
        step = getattr(located, "step", located)
        if isinstance(step, ExpectRace):
            out[step.window] = max(out.get(step.window, 0), step.min_seeds or 0)
    return out


def windows_hit(events: Iterable[dict[str, Any]]) -> set[str]:
    """The windows a run's ``expect_race`` steps saw hit."""
    return {e["window"] for e in events if e["event"] == RACE_EVENT and e["hits"]}
