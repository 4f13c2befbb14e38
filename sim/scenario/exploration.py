"""What an exploration found, as values: failing seeds, groups, falsifying examples, reports.

Nothing here runs a scenario (:mod:`sim.scenario.explore` does); everything here is plain
data that worker processes send back, ``report.json`` holds, and ``turnsim explore merge``
reads back and combines.

**One failure, one group.** A failing seed's *first violation* is the first of its
failures, named by :func:`~sim.scenario.shrink.failure_group` (an invariant,
``expectation:<step>`` or ``error:<type>``); its *cause* is that name plus the kind of step
the violation is traced to (``switch_profile``, ``resave``, ...), as Hypothesis groups
failures by exception type and origin. Explore shrinks the first seed of every cause to a
*falsifying example* (Hypothesis's word: the smallest scenario file that still fails that
way, with its replay command and the violations it shows). Causes with the same first
violation whose examples shrank to the same scenario (:func:`~sim.scenario.shrink.
shape_of`, the seed left out) are one group, shown once with the example of its first
seed. Without shrinking, each cause is a group. Groups, seeds and examples are ordered by
seed, so a report does not depend on the order in which workers finished.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from sim.scenario.result import Failure
from sim.scenario.shrink import ShrinkResult, failure_group


class ReportError(ValueError):
    """A report that cannot be read back or combined (what, which file, how to fix)."""


@attrs.frozen
class SeedFailure:
    """One failing seed: its failures (as the SQLite file store confirmed them) and the
    command that replays it."""

    seed: int
    failures: tuple[Failure, ...]
    replay: str

    @property
    def first_violation(self) -> str:
        return failure_group(self.failures[0])

    @property
    def cause(self) -> str:
        """The first violation and the kind of step it is traced to (``switch_profile``,
        ``resave``, ...), if any: seeds with one cause are shrunk once, from the first."""
        kind = re.search(r"\((\w+)\)$", self.failures[0].where)
        return f"{self.first_violation} @ {kind[1]}" if kind else self.first_violation

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "first_violation": self.first_violation,
            "cause": self.cause,
            "replay": self.replay,
            "failures": [f.to_json() for f in self.failures],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SeedFailure:
        return cls(
            int(doc["seed"]), tuple(Failure.from_json(f) for f in doc["failures"]), doc["replay"]
        )


@attrs.frozen
class SeedOutcome:
    """One seed as the explore web page draws it: passed or not, and when each random
    switch fired. Small on purpose: batches carry one per seed back from the workers."""

    seed: int
    passed: bool
    #: step index -> ms from its step's start to the switch (absent: it never fired).
    delays: dict[int, int]


def switch_delays(events: Iterable[dict[str, Any]]) -> dict[int, int]:
    """For each step that switched a profile, the ms between the step and the switch.

    The same reading :func:`sim.scenario.shrink.pin_random_switches` pins a switch with.
    """
    started: dict[int, int] = {}
    fired: dict[int, int] = {}
    for e in events:
        step, t = e.get("step"), e.get("t_ms")
        if not isinstance(step, int) or not isinstance(t, int):
            continue
        if e["event"] == "step.started":
            started[step] = t
        elif e["event"] == "profile.switched" and e.get("reason") == "switch_profile":
            fired.setdefault(step, t)
    return {step: t - started[step] for step, t in fired.items() if step in started}


@attrs.frozen
class BatchResult:
    """What a batch of seeds gave: the figures summed, and its failing seeds in seed order.

    ``wall_s`` and ``cpu_s`` are the batch's own wall and CPU seconds in the process that
    ran it (not part of a report: they differ between runs).
    """

    seeds: tuple[int, ...]
    runs: int
    turns: int
    switches: int
    faults_injected: int
    virtual_ms: int
    wall_s: float
    failed: tuple[SeedFailure, ...]
    cpu_s: float = 0.0
    #: One per seed, in the batch's order, when the batch was asked for them
    #: (:attr:`~sim.scenario.batches.SeedBatch.outcomes`); else empty.
    outcomes: tuple[SeedOutcome, ...] = ()
    #: (race window, seeds of the batch that hit it) for each window the scenario declares
    #: (``expect_race``, :mod:`sim.scenario.races`).
    races: tuple[tuple[str, int], ...] = ()


@attrs.frozen
class Shard:
    """Shard ``index`` of ``count`` (1-based): a contiguous block of the seed range, plus
    the remembered seeds outside the range whose ``seed % count == index - 1``."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``K/N`` with 1 <= K <= N; raises :class:`ValueError` saying what is accepted."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if match is None:
            raise ValueError(f"--shard {text!r}: expected K/N, e.g. 2/8 (shard 2 of 8)")
        index, count = int(match[1]), int(match[2])
        if not 1 <= index <= count:
            raise ValueError(f"--shard {text!r}: K must be between 1 and N (got {index}/{count})")
        return cls(index, count)

    def part(self, seeds: range) -> range:
        """This shard's block of ``seeds`` (the blocks of all shards cover it exactly)."""
        n = len(seeds)
        lo = (self.index - 1) * n // self.count
        hi = self.index * n // self.count
        return range(seeds.start + lo, seeds.start + hi)

    def owns(self, seed: int, seeds: range) -> bool:
        """Whether a remembered seed is this shard's to replay."""
        if seed in seeds:
            return seed in self.part(seeds)
        return seed % self.count == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@attrs.frozen
class Group:
    """Seeds that fail the same way, with one falsifying example (None when not shrunk)."""

    first_violation: str
    causes: tuple[str, ...]
    seeds: tuple[SeedFailure, ...]
    example: ShrinkResult | None

    @property
    def first(self) -> SeedFailure:
        return self.seeds[0]

    def to_json(self) -> dict[str, Any]:
        first = self.first.failures[0]
        example = None
        if self.example is not None:
            example = {
                "path": self.example.path,
                "replay": self.example.replay,
                "seed": self.example.seed,
                "original_seed": self.example.original_seed,
                "size": self.example.size.to_json(),
                "original_size": self.example.original_size.to_json(),
                "runs": self.example.runs,
                "violations": [f.to_json() for f in self.example.failures],
            }
        return {
            "first_violation": self.first_violation,
            "causes": list(self.causes),
            "seeds": [f.seed for f in self.seeds],
            "first_message": first.message,
            "where": first.where,
            "replays": [f.replay for f in self.seeds],
            "example": example,
        }


def group_failures(failed: Sequence[SeedFailure], examples: dict[str, ShrinkResult]) -> list[Group]:
    """Group failing seeds (see the module docstring); groups ordered by their first seed.

    ``examples`` maps a cause to the shrunk example of its first seed; a cause without one
    stays a group of its own.
    """
    by_cause: dict[str, list[SeedFailure]] = {}
    for f in sorted(failed, key=lambda f: f.seed):
        by_cause.setdefault(f.cause, []).append(f)
    merged: dict[tuple[str, str], list[str]] = {}  # causes in order of their first seed
    for cause, seeds in by_cause.items():
        example = examples.get(cause)
        same = example.shape if example is not None and example.shape else f"cause:{cause}"
        merged.setdefault((seeds[0].first_violation, same), []).append(cause)
    groups = []
    for (first_violation, _), causes in merged.items():
        seeds = sorted((f for c in causes for f in by_cause[c]), key=lambda f: f.seed)
        groups.append(Group(first_violation, tuple(causes), tuple(seeds), examples.get(causes[0])))
    return sorted(groups, key=lambda g: g.first.seed)


def _range_json(seeds: range) -> dict[str, int]:
    return {"first": seeds.start, "last": seeds.stop - 1, "count": len(seeds)}


def _range_from(doc: dict[str, Any]) -> range:
    return range(int(doc["first"]), int(doc["first"]) + int(doc["count"]))


@attrs.define
class Exploration:
    """Every seed of one scenario under one set of variants: figures, failing seeds,
    examples. ``replayed`` seeds (remembered failures, or a report's with ``--rerun``) run
    first; the range ``seeds`` after them."""

    scenario: str
    path: str
    sha256: str
    variants: tuple[str, ...]
    seeds: range
    replayed: tuple[int, ...] = ()
    shard: Shard | None = None
    #: The whole range the shards split (``seeds`` when not sharded).
    whole: range | None = None
    #: Shards a merged exploration lacks (``K/N`` each); it is then not complete.
    missing_shards: tuple[str, ...] = ()
    failed: list[SeedFailure] = attrs.field(factory=list)
    examples: dict[str, ShrinkResult] = attrs.field(factory=dict)
    #: Every seed that ran, by seed, when the batches carried outcomes (``--html``); not
    #: part of the report (a merged or read-back exploration has none).
    outcomes: list[SeedOutcome] = attrs.field(factory=list)
    #: Race window -> seeds it needs (0: every seed must hit it), as the scenario declares.
    race_windows: dict[str, int] = attrs.field(factory=dict)
    #: Race window -> seeds that hit it.
    race_hits: dict[str, int] = attrs.field(factory=dict)
    runs: int = 0
    turns: int = 0
    switches: int = 0
    faults_injected: int = 0
    virtual_ms: int = 0
    wall_s: float = 0.0

    @property
    def planned(self) -> int:
        """How many runs the exploration is meant to make."""
        return len(self.seeds) + sum(1 for s in self.replayed if s not in self.seeds)

    @property
    def complete(self) -> bool:
        return self.runs == self.planned and not self.missing_shards

    @property
    def passed(self) -> bool:
        return not self.failed and not self.races_short()

    def races_short(self) -> list[str]:
        """The windows hit by fewer seeds than their ``min_seeds``, in words."""
        return [
            f"race window {w} was hit by {self.race_hits.get(w, 0)} of {self.runs} seeds, "
            f"fewer than the {need} its expect_race asks for (min_seeds)"
            for w, need in self.race_windows.items()
            if need and self.race_hits.get(w, 0) < need
        ]

    def add(self, result: BatchResult) -> None:
        """Count one batch; keep its failing seeds (:meth:`finish` orders them by seed)."""
        self.runs += result.runs
        self.turns += result.turns
        self.switches += result.switches
        self.faults_injected += result.faults_injected
        self.virtual_ms += result.virtual_ms
        self.wall_s += result.wall_s
        self.failed.extend(result.failed)
        self.outcomes.extend(result.outcomes)
        for window, hits in result.races:
            self.race_hits[window] = self.race_hits.get(window, 0) + hits

    def finish(self) -> None:
        """Order the failing seeds (and outcomes) by seed, whatever order their batches
        came back in."""
        self.failed.sort(key=lambda f: f.seed)
        self.outcomes.sort(key=lambda o: o.seed)

    def causes(self) -> dict[str, SeedFailure]:
        """Each cause -> its first failing seed (the one shrunk), in seed order."""
        out: dict[str, SeedFailure] = {}
        for f in self.failed:
            out.setdefault(f.cause, f)
        return out

    def groups(self) -> list[Group]:
        return group_failures(self.failed, self.examples)

    def to_json(self) -> dict[str, Any]:
        """The deterministic part: no wall time, nothing about how it was run."""
        groups = self.groups()
        return {
            "scenario": self.scenario,
            "path": self.path,
            "sha256": self.sha256,
            "variants": list(self.variants),
            "seeds": _range_json(self.seeds),
            "replayed": list(self.replayed),
            "shard": None
            if self.shard is None
            else {
                "index": self.shard.index,
                "count": self.shard.count,
                "of": _range_json(self.whole if self.whole is not None else self.seeds),
            },
            "missing_shards": list(self.missing_shards),
            "complete": self.complete,
            "passed": self.passed,
            "failed_seeds": [f.seed for f in self.failed],
            "runs": self.runs,
            "turns": self.turns,
            "switches": self.switches,
            "faults_injected": self.faults_injected,
            "virtual_ms": self.virtual_ms,
            "groups": [g.to_json() for g in groups],
            "races": {
                w: {"hits": self.race_hits.get(w, 0), "min_seeds": need}
                for w, need in self.race_windows.items()
            },
            "races_short": self.races_short(),
            "examples": {cause: e.to_json() for cause, e in self.examples.items()},
            "failures": [f.to_json() for f in self.failed],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Exploration:
        shard = doc.get("shard")
        return cls(
            scenario=doc["scenario"],
            path=doc["path"],
            sha256=doc.get("sha256", ""),
            variants=tuple(doc["variants"]),
            seeds=_range_from(doc["seeds"]),
            replayed=tuple(int(s) for s in doc.get("replayed", ())),
            shard=None if shard is None else Shard(int(shard["index"]), int(shard["count"])),
            whole=None if shard is None else _range_from(shard["of"]),
            missing_shards=tuple(doc.get("missing_shards", ())),
            failed=[SeedFailure.from_json(f) for f in doc["failures"]],
            examples={c: ShrinkResult.from_json(e) for c, e in doc["examples"].items()},
            runs=int(doc["runs"]),
            turns=int(doc["turns"]),
            switches=int(doc["switches"]),
            faults_injected=int(doc["faults_injected"]),
            virtual_ms=int(doc["virtual_ms"]),
            race_windows={w: int(r["min_seeds"]) for w, r in doc.get("races", {}).items()},
            race_hits={w: int(r["hits"]) for w, r in doc.get("races", {}).items()},
        )


def report_json(explorations: Sequence[Exploration]) -> dict[str, Any]:
    """The whole exploration as one JSON document: the same whatever ``--jobs``, executor
    or shards produced it (how it ran goes in a ``run`` key the caller adds)."""
    return {
        "passed": all(e.passed for e in explorations),
        "complete": all(e.complete for e in explorations),
        "summary": {
            "scenarios": len(explorations),
            "runs": sum(e.runs for e in explorations),
            "failed_runs": sum(len(e.failed) for e in explorations),
            "groups": sum(len(e.groups()) for e in explorations),
            "turns": sum(e.turns for e in explorations),
            "switches": sum(e.switches for e in explorations),
            "faults_injected": sum(e.faults_injected for e in explorations),
            "virtual_ms": sum(e.virtual_ms for e in explorations),
        },
        "scenarios": [e.to_json() for e in explorations],
    }


def read_report(doc: Any, name: str) -> list[Exploration]:
    """The explorations of a report document (``name`` is its file, for messages)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("scenarios"), list):
        raise ReportError(f"{name}: not a turnsim explore report (no 'scenarios' list)")
    try:
        return [Exploration.from_json(s) for s in doc["scenarios"]]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ReportError(
            f"{name}: not a report this turnsim can read ({type(exc).__name__}: {exc}); "
            "was it written by another version? re-run the exploration"
        ) from None


def merge(parts: Iterable[tuple[str, Exploration]]) -> list[Exploration]:
    """Combine the shards of explorations into one exploration per (path, scenario,
    variants), in order of first appearance.

    Figures add up, failing seeds and causes are ordered by seed, and each cause keeps the
    example of its first seed: the one a single unsharded run would have shrunk. So merging
    every shard of a run gives that run's report. With shards missing the result covers
    the whole range, is not ``complete`` and names them in ``missing_shards``. ``parts``
    pairs each exploration with the report it came from (for messages).
    """
    buckets: dict[tuple[str, str, tuple[str, ...]], list[tuple[str, Exploration]]] = {}
    for name, e in parts:
        buckets.setdefault((e.path, e.scenario, e.variants), []).append((name, e))
    return [_merge_one(group) for group in buckets.values()]


def _merge_one(parts: list[tuple[str, Exploration]]) -> Exploration:
    first_name, first = parts[0]
    if len(parts) == 1 and first.shard is None:
        return first
    for name, e in parts:
        if e.sha256 != first.sha256:
            raise ReportError(
                f"{name} and {first_name} explored different versions of {e.path} "
                f"(sha256 {e.sha256[:12]} vs {first.sha256[:12]}); re-run the older shard"
            )
    whole, missing = _shards_of(parts)
    out = Exploration(
        scenario=first.scenario,
        path=first.path,
        sha256=first.sha256,
        variants=first.variants,
        seeds=whole,
        replayed=tuple(sorted({s for _, e in parts for s in e.replayed})),
        missing_shards=missing,
    )
    by_seed: dict[int, str] = {}
    for name, e in parts:
        out.runs += e.runs
        out.turns += e.turns
        out.switches += e.switches
        out.faults_injected += e.faults_injected
        out.virtual_ms += e.virtual_ms
        out.wall_s += e.wall_s
        out.race_windows.update(e.race_windows)
        for window, hits in e.race_hits.items():
            out.race_hits[window] = out.race_hits.get(window, 0) + hits
        for f in e.failed:
            if f.seed in by_seed:
                raise ReportError(
                    f"seed {f.seed} of {e.path} is in both {by_seed[f.seed]} and {name}; "
                    "shards of one exploration never share a seed: were they run with "
                    "different --seeds, --start or failure databases?"
                )
            by_seed[f.seed] = name
            out.failed.append(f)
    out.failed.sort(key=lambda f: f.seed)
    first_seed = {cause: f.seed for cause, f in out.causes().items()}
    for cause, seed in first_seed.items():
        out.examples.update(
            (cause, example)
            for _, e in parts
            for c, example in e.examples.items()
            if c == cause and example.original_seed == seed
        )
    out.examples = {c: out.examples[c] for c in first_seed if c in out.examples}
    return out


def _shards_of(parts: list[tuple[str, Exploration]]) -> tuple[range, tuple[str, ...]]:
    """The whole seed range the parts are shards of, and the shards not among them."""
    name, e = parts[0]
    if e.shard is None:
        raise ReportError(
            f"{name} explored {e.path} without --shard, as did another report: merge "
            "combines the shards of one exploration (turnsim explore ... --shard K/N)"
        )
    count, whole = e.shard.count, e.whole
    seen: dict[int, str] = {}
    for n, p in parts:
        if p.shard is None or p.shard.count != count or p.whole != whole:
            raise ReportError(
                f"{n} and {name} are not shards of one exploration of {p.path} "
                f"(shard {p.shard or 'none'} of seeds {_span(p.whole or p.seeds)} vs "
                f"{e.shard} of seeds {_span(whole)}); merge the shards of one exploration"
            )
        if p.shard.index in seen:
            raise ReportError(
                f"{n} and {seen[p.shard.index]} are both shard {p.shard} of {p.path}; "
                "merge each shard once"
            )
        seen[p.shard.index] = n
    assert whole is not None
    missing = tuple(str(Shard(i, count)) for i in range(1, count + 1) if i not in seen)
    return whole, missing


def _span(seeds: range | None) -> str:
    if seeds is None or not len(seeds):
        return "none"
    return f"{seeds.start}..{seeds.stop - 1}"


def one_line(f: Failure) -> str:
    """A failure in one line: where (conversation, turn, phase), then what."""
    where = " ".join(
        x
        for x in (
            f"conversation {f.conv_id}" if f.conv_id else "",
            f"turn {f.turn_id}" if f.turn_id else "",
            f"phase {f.phase}" if f.phase else "",
        )
        if x
    )
    text = f"{where}: {f.message}" if where else f.message
    return " ".join(text.split())


__all__ = [
    "BatchResult",
    "Exploration",
    "Group",
    "ReportError",
    "SeedFailure",
    "SeedOutcome",
    "Shard",
    "group_failures",
    "merge",
    "one_line",
    "read_report",
    "report_json",
    "switch_delays",
]
