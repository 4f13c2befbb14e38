"""Seed exploration: run each scenario under many seeds and group what fails.

A seed is a whole run (FoundationDB's simulation, TigerBeetle's VOPR): it decides the
latency jitter of every phase (per profile ``jitter_ms``), which of several simultaneously
ready actors runs first (the kernel's ``schedule`` stream), and when each switch marked
``at: random`` fires (within its ``within_ms``). Exploring runs exactly what
``turnsim run FILE --seed N`` runs, through the same :func:`sim.scenario.runner.run_scenario`, so a
failing seed's replay command reproduces its run, and its log, byte for byte.

Failures are grouped by what broke: the invariant's name, ``expectation:<step>`` or
``error:<type>``. For each group the first failing seed can be shrunk
(:mod:`sim.scenario.shrink`) to the smallest scenario that still fails the same way.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

from persisters.model import dumps
from persisters.stores import SQLITE, StoreSpec
from sim.scenario.model import Scenario
from sim.scenario.result import Failure, ScenarioResult
from sim.scenario.runner import FreshStore, run_scenario
from sim.scenario.shrink import ShrinkResult, failure_group, shrink_failure


@attrs.frozen
class SeedFailure:
    """One failing seed: what failed, and the command that replays it."""

    seed: int
    failures: tuple[Failure, ...]
    replay: str

    def groups(self) -> list[str]:
        """The failure groups of this seed, in first-seen order."""
        return list(dict.fromkeys(failure_group(f) for f in self.failures))

    def first(self, group: str) -> Failure:
        return next(f for f in self.failures if failure_group(f) == group)

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "groups": self.groups(),
            "replay": self.replay,
            "failures": [f.to_json() for f in self.failures],
        }


@attrs.define
class Exploration:
    """Every seed of one scenario: figures, failing seeds and shrunk reproductions."""

    scenario: str
    path: str
    variants: tuple[str, ...]
    seeds: range
    failed: list[SeedFailure] = attrs.field(factory=list)
    shrunk: dict[str, ShrinkResult] = attrs.field(factory=dict)
    runs: int = 0
    turns: int = 0
    switches: int = 0
    faults_injected: int = 0
    virtual_ms: int = 0
    wall_s: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.failed

    def groups(self) -> dict[str, list[SeedFailure]]:
        """Failure group -> the seeds that show it, in seed order; groups in first-seen order."""
        out: dict[str, list[SeedFailure]] = {}
        for failure in self.failed:
            for group in failure.groups():
                out.setdefault(group, []).append(failure)
        return out

    def add(self, result: ScenarioResult) -> None:
        """Count one run; keep it if it failed (its events are not kept)."""
        self.runs += 1
        self.turns += result.turns
        self.switches += result.switches
        self.faults_injected += sum(1 for e in result.events if e["event"] == "fault.injected")
        self.virtual_ms += result.virtual_ms
        self.wall_s += result.wall_s
        if not result.passed:
            self.failed.append(SeedFailure(result.seed, tuple(result.failures), result.replay))

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "path": self.path,
            "variants": list(self.variants),
            "seeds": {"first": self.seeds.start, "last": self.seeds.stop - 1, "count": self.runs},
            "complete": self.runs == len(self.seeds),
            "passed": self.passed,
            "failed_seeds": [f.seed for f in self.failed],
            "runs": self.runs,
            "turns": self.turns,
            "switches": self.switches,
            "faults_injected": self.faults_injected,
            "virtual_ms": self.virtual_ms,
            "wall_s": round(self.wall_s, 3),
            "groups": {
                group: {
                    "seeds": [f.seed for f in failures],
                    "first_message": failures[0].first(group).message,
                    "replays": [f.replay for f in failures],
                }
                for group, failures in self.groups().items()
            },
            "shrunk": {group: s.to_json() for group, s in self.shrunk.items()},
            "failures": [f.to_json() for f in self.failed],
        }


#: Called after each run: (scenario, seed, result).
Progress = Callable[[Scenario, int, ScenarioResult], None]


async def explore_scenario(
    scenario: Scenario,
    seeds: range,
    *,
    variants: Iterable[str] = (),
    on_result: Progress | None = None,
    on_start: Callable[[Exploration], None] | None = None,
    store: StoreSpec = SQLITE,
    fresh: FreshStore | None = None,
) -> Exploration:
    """Run ``scenario`` once per seed (a temporary database each) and collect failures.

    An unexpected exception in a run is recorded as that seed's failure (group
    ``error:<type>``) instead of ending the exploration; its replay shows the traceback.
    ``on_start`` receives the exploration before the first run, so a caller interrupted
    midway still holds what was found so far.
    """
    chosen = tuple(variants)
    found = Exploration(scenario.name, scenario.path, _sorted_variants(chosen), seeds)
    if on_start is not None:
        on_start(found)
    for seed in seeds:
        started = time.perf_counter()
        try:
            result = await run_scenario(
                scenario, seed=seed, variants=chosen, store=store, fresh=fresh
            )
        except Exception as exc:  # a bug of ours: keep exploring, report it with its replay
            result = ScenarioResult(
                scenario=scenario.name,
                path=scenario.path,
                seed=seed,
                variants=found.variants,
                failures=[Failure("error", type(exc).__name__, str(exc))],
                turns=0,
                switches=0,
                checks=0,
                virtual_ms=0,
                wall_s=time.perf_counter() - started,
            )
        found.add(result)
        if on_result is not None:
            on_result(scenario, seed, result)
    return found


def _sorted_variants(variants: Sequence[str]) -> tuple[str, ...]:
    from sim.runtime.variants import parse_variants

    return parse_variants(list(variants))


def shrunk_path(out_dir: str | os.PathLike[str], scenario: Scenario, group: str, seed: int) -> str:
    """Where the shrunk scenario of one failure group is written."""
    stem = Path(scenario.path).stem or scenario.name
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", group).strip("-")
    return os.path.join(os.fspath(out_dir), f"{stem}.{safe}.seed{seed}.yaml")


async def shrink_groups(
    scenario: Scenario,
    found: Exploration,
    out_dir: str | os.PathLike[str],
    *,
    max_runs: int = 200,
    on_run: Callable[[], None] | None = None,
) -> None:
    """Shrink the first failing seed of every failure group; write each result to a file."""
    os.makedirs(out_dir, exist_ok=True)
    for group, failures in found.groups().items():
        seed = failures[0].seed
        path = shrunk_path(out_dir, scenario, group, seed)
        result = await shrink_failure(
            scenario,
            seed,
            found.variants,
            group,
            out_path=path,
            max_runs=max_runs,
            on_run=on_run,
        )
        Path(path).write_text(result.text, encoding="utf-8")
        found.shrunk[group] = result


def report_json(explorations: Sequence[Exploration], seeds: range) -> dict[str, Any]:
    """The whole exploration as one JSON document (what ``--json`` prints)."""
    return {
        "passed": all(e.passed for e in explorations),
        "summary": {
            "scenarios": len(explorations),
            "seeds_per_scenario": len(seeds),
            "runs": sum(e.runs for e in explorations),
            "failed_runs": sum(len(e.failed) for e in explorations),
            "turns": sum(e.turns for e in explorations),
            "switches": sum(e.switches for e in explorations),
            "faults_injected": sum(e.faults_injected for e in explorations),
            "virtual_ms": sum(e.virtual_ms for e in explorations),
            "wall_s": round(sum(e.wall_s for e in explorations), 3),
        },
        "scenarios": [e.to_json() for e in explorations],
    }


def write_report(
    out_dir: str | os.PathLike[str], explorations: Sequence[Exploration], seeds: range
) -> str:
    """Write ``report.json`` into ``out_dir`` (beside the shrunk scenarios); return its path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(os.fspath(out_dir), "report.json")
    Path(path).write_text(dumps(report_json(explorations, seeds)) + "\n", encoding="utf-8")
    return path


def describe(found: Exploration, *, show: int = 10) -> list[str]:
    """Lines for people: failing seeds grouped by failure, each with its replay command.

    ``show`` caps the seeds listed per group (0: all); the report file lists every one.
    """
    variant = f" [{'+'.join(found.variants)}]" if found.variants else ""
    head = f"{found.scenario}{variant} ({found.path}): "
    if found.passed:
        return [head + f"all {found.runs} seeds passed"]
    lines = [head + f"{len(found.failed)} of {found.runs} seeds failed"]
    for group, failures in found.groups().items():
        lines.append(f"  {group}: {len(failures)} seed{'s' if len(failures) != 1 else ''}")
        first = failures[0].first(group)
        lines.append(f"    first (seed {failures[0].seed}): {_one_line(first)}")
        listed = failures if show <= 0 else failures[:show]
        width = len(str(max(f.seed for f in listed)))
        for f in listed:
            lines.append(f"    seed {f.seed:<{width}}  {f.replay}")
        if len(listed) < len(failures):
            lines.append(
                f"    ... and {len(failures) - len(listed)} more (every seed, with its replay "
                "command, is in the report; --show 0 lists them here)"
            )
        shrunk = found.shrunk.get(group)
        if shrunk is not None:
            lines.append(
                f"    smallest failing run found: {shrunk.path} ({shrunk.size}; was "
                f"{shrunk.original_size}; {shrunk.runs} runs tried)"
            )
            lines.append(f"      {shrunk.replay}")
    return lines


def _one_line(f: Failure) -> str:
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
    "Exploration",
    "SeedFailure",
    "describe",
    "explore_scenario",
    "report_json",
    "shrink_groups",
    "shrunk_path",
    "write_report",
]
