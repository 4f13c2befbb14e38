"""Seed exploration: run each scenario under many seeds, everywhere at once, and group
what fails.

A seed is a whole run (FoundationDB's simulation, TigerBeetle's VOPR): it decides the
latency jitter of every phase (per profile ``jitter_ms``), which of several simultaneously
ready actors runs first (the kernel's ``schedule`` stream), and when each switch marked
``at: random`` fires (within its ``within_ms``). Exploring runs exactly what
``turnsim run FILE --seed N`` runs, through the same :func:`sim.scenario.runner.run_scenario`.

How it runs (each piece in its own module):

* seeds go out in batches (:mod:`sim.scenario.batches`) to an executor
  (:mod:`sim.scenario.executors`: this process, ``--jobs N`` worker processes, or a Dask
  cluster), on a fast store (the memory store by default); a failing seed is re-checked on
  a SQLite file before it is reported, so its replay command reproduces it;
* remembered failing seeds (:mod:`sim.scenario.failure_db`) run first;
* the first seed of every cause is shrunk, failures are grouped "one failure, one group"
  and everything is ordered by seed (:mod:`sim.scenario.exploration`), so the report is
  the same whatever ran it;
* ``--shard K/N`` explores one block of the seeds; :func:`merge_reports` combines shards.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from persisters.model import dumps
from persisters.stores import SQLITE, StoreSpec
from sim.runtime.variants import parse_variants
from sim.scenario.batches import SeedBatch, ShrinkJob, Source, run_batch, run_shrink
from sim.scenario.executors import Executor, InProcess, Processes
from sim.scenario.exploration import (
    BatchResult,
    Exploration,
    ReportError,
    SeedFailure,
    Shard,
    merge,
    one_line,
    read_report,
    report_json,
)
from sim.scenario.failure_db import FailureDatabase
from sim.scenario.model import Scenario
from sim.scenario.races import declared_windows, windows_hit
from sim.scenario.result import ScenarioResult
from sim.scenario.runner import FreshStore, run_scenario
from sim.scenario.shrink import ShrinkResult, failure_group

#: Batches per worker that an exploration is cut into (more: finer progress, and a
#: stop waits less; fewer: less overhead per seed), and the most seeds in one batch.
BATCHES_PER_WORKER = 8
MAX_BATCH = 50


@attrs.frozen
class Target:
    """One scenario to explore under one set of variants: ``replayed`` seeds first, then
    the range ``seeds`` (for a shard: its block of ``whole``)."""

    source: Source
    variants: tuple[str, ...]
    seeds: range
    replayed: tuple[int, ...] = ()
    shard: Shard | None = None
    whole: range | None = None

    def exploration(self) -> Exploration:
        scenario = self.source.scenario()
        return Exploration(
            scenario=scenario.name,
            path=self.source.path,
            sha256=self.source.sha256,
            variants=self.variants,
            seeds=self.seeds,
            replayed=self.replayed,
            shard=self.shard,
            whole=self.whole,
            race_windows=declared_windows(scenario.steps),
        )

    def order(self) -> Iterator[int]:
        """Every seed to run, remembered ones first."""
        first = set(self.replayed)
        return itertools.chain(self.replayed, (s for s in self.seeds if s not in first))


@attrs.frozen
class Settings:
    """How seeds run: the store and backend, and the shrinking budget."""

    store: str = "memory"
    backend: str = "asyncio"
    shrink: bool = True
    shrink_runs: int = 200
    out_dir: str = "explore-report"
    #: Seeds per batch; 0 sizes batches from the exploration and the executor.
    batch_size: int = 0
    #: Keep every seed's pass/fail and switch delays in ``Exploration.outcomes`` (what
    #: ``--html`` draws; a few numbers per seed, carried back in the batch results).
    outcomes: bool = False


class Listener:
    """What an exploration reports as it goes (the CLI draws progress from it)."""

    def planned(self, found: Exploration) -> None:
        """Before any run: ``found.planned`` runs are coming for this scenario."""

    def ran(self, found: Exploration, result: BatchResult) -> None:
        """A batch finished (``found`` already counts it)."""

    def shrinking(self, jobs: int) -> None:
        """Shrinking starts: ``jobs`` failing seeds, one per cause."""

    def shrunk(self, found: Exploration, example: ShrinkResult) -> None:
        """One shrink finished."""


@attrs.define
class Outcome:
    """What :func:`explore` leaves: the explorations (complete or not) and what went wrong
    beside the runs (failure database writes)."""

    explorations: list[Exploration]
    interrupted: bool = False
    warnings: list[str] = attrs.field(factory=list)
    #: Wall seconds spent running the seeds, and shrinking.
    explore_s: float = 0.0
    shrink_s: float = 0.0
    #: Why the exploration ended early, if its executor failed (the seeds that ran are
    #: counted; nothing was shrunk).
    error: str | None = None


def open_executor(jobs: int, scheduler: str | None = None) -> Executor:
    """The executor for ``--jobs`` / ``--scheduler`` (a Dask scheduler's address).

    ``--scheduler`` needs the ``cluster`` extra (:class:`ImportError` says how to get it);
    one that cannot be reached raises :class:`~sim.scenario.cluster.ClusterError`.
    """
    if scheduler:
        from sim.scenario.cluster import DaskExecutor

        return DaskExecutor(scheduler)
    if jobs <= 1:
        return InProcess()
    return Processes(jobs)


def plan(
    sources: Sequence[Source],
    variants: tuple[str, ...],
    seeds: range,
    *,
    shard: Shard | None = None,
    database: FailureDatabase | None = None,
) -> list[Target]:
    """One target per scenario: the range (this shard's block of it) after the
    remembered failing seeds this shard owns."""
    targets = []
    for source in sources:
        remembered = database.seeds(source.scenario().name, variants) if database else []
        if shard is None:
            targets.append(Target(source, variants, seeds, tuple(remembered)))
        else:
            mine = tuple(s for s in remembered if shard.owns(s, seeds))
            targets.append(Target(source, variants, shard.part(seeds), mine, shard, seeds))
    return targets


def plan_rerun(doc: Any, name: str) -> list[Target]:
    """One target per scenario of a report that failed: exactly its failing seeds.

    The scenario files are read again from the paths in the report; a missing or broken
    one raises :class:`~sim.scenario.parse.ScenarioError`.
    """
    from sim.scenario.parse import read_scenario_text

    targets = []
    for found in read_report(doc, name):
        if found.failed:
            source = Source(found.path, read_scenario_text(found.path))
            source.scenario()  # a file that no longer parses fails here, with its position
            seeds = tuple(f.seed for f in found.failed)
            targets.append(Target(source, found.variants, range(0), seeds))
    return targets


def _chunks(seeds: Iterable[int], size: int) -> Iterator[tuple[int, ...]]:
    it = iter(seeds)
    while chunk := tuple(itertools.islice(it, size)):
        yield chunk


def batch_size(total: int, workers: int) -> int:
    """Seeds per batch: about :data:`BATCHES_PER_WORKER` batches per worker."""
    return max(1, min(MAX_BATCH, math.ceil(total / (workers * BATCHES_PER_WORKER))))


def explore(
    targets: Sequence[Target],
    settings: Settings,
    executor: Executor,
    *,
    listener: Listener | None = None,
    database: FailureDatabase | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Outcome:
    """Explore every target on ``executor``; shrink, remember and return what failed.

    ``should_stop`` is asked after every batch (the CLI's Ctrl-C): the exploration then
    stops taking batches, waits for those in flight, skips shrinking and returns what ran
    (``interrupted``). An executor that fails (a worker process killed, a cluster gone)
    ends it the same way, with the failure in ``error``. The explorations' figures,
    failing seeds, groups and examples do not depend on the executor or the number of
    workers.
    """
    listener = listener or Listener()
    out = Outcome([t.exploration() for t in targets])
    for found in out.explorations:
        listener.planned(found)
    ran_remembered: list[set[int]] = [set() for _ in targets]
    owners: list[int] = []
    total = sum(f.planned for f in out.explorations)
    size = settings.batch_size or batch_size(total, executor.workers)

    def jobs() -> Iterator[SeedBatch]:
        for t, target in enumerate(targets):
            for chunk in _chunks(target.order(), size):
                owners.append(t)
                yield SeedBatch(
                    target.source,
                    chunk,
                    target.variants,
                    settings.store,
                    settings.backend,
                    settings.outcomes,
                )

    started = time.perf_counter()
    results = executor.map(run_batch, jobs())
    try:
        for i, result in results:
            t = owners[i]
            found = out.explorations[t]
            found.add(result)
            ran_remembered[t].update(s for s in result.seeds if s in targets[t].replayed)
            listener.ran(found, result)
            if should_stop():
                out.interrupted = True
                break
    except Exception as exc:  # the executor broke (a worker died, the cluster went away)
        out.error = f"{executor.describe()} failed: {type(exc).__name__}: {exc}"
    finally:
        results.close()  # type: ignore[attr-defined]
    out.explore_s = time.perf_counter() - started
    for found in out.explorations:
        found.finish()
    if database is not None:
        out.warnings.extend(_remember(database, out.explorations, ran_remembered))
    if settings.shrink and not out.interrupted and out.error is None:
        started = time.perf_counter()
        finished = _shrink(targets, out.explorations, settings, executor, listener, should_stop)
        out.interrupted = not finished
        out.shrink_s = time.perf_counter() - started
    return out


def _shrink(
    targets: Sequence[Target],
    explorations: Sequence[Exploration],
    settings: Settings,
    executor: Executor,
    listener: Listener,
    should_stop: Callable[[], bool],
) -> bool:
    """Shrink the first seed of every cause; False if stopped before the end."""
    jobs: list[tuple[Exploration, str, ShrinkJob]] = []
    for target, found in zip(targets, explorations, strict=True):
        scenario = target.source.scenario()
        for cause, first in found.causes().items():
            path = shrunk_path(settings.out_dir, scenario.path, first.first_violation, first.seed)
            job = ShrinkJob(
                target.source,
                first.seed,
                found.variants,
                first.first_violation,
                path,
                settings.shrink_runs,
                settings.store,
                settings.backend,
            )
            jobs.append((found, cause, job))
    if not jobs:
        return True
    listener.shrinking(len(jobs))
    results = executor.map(run_shrink, (job for _, _, job in jobs))
    try:
        for i, example in results:
            found, cause, _ = jobs[i]
            found.examples[cause] = example
            listener.shrunk(found, example)
            if should_stop():
                return False
    finally:
        results.close()  # type: ignore[attr-defined]
    for found in explorations:  # in cause order, whatever order the shrinks finished in
        found.examples = {c: found.examples[c] for c in found.causes() if c in found.examples}
    return True


def _remember(
    database: FailureDatabase, explorations: Sequence[Exploration], ran: Sequence[set[int]]
) -> list[str]:
    """Record failing seeds; forget remembered ones that ran and passed. Problems as text."""
    problems = []
    for found, ran_remembered in zip(explorations, ran, strict=True):
        failing = {f.seed for f in found.failed}
        try:
            for f in found.failed:
                database.save(found.scenario, found.variants, f.seed, one_line(f.failures[0]))
            for seed in sorted(ran_remembered - failing):
                database.delete(found.scenario, found.variants, seed)
        except OSError as exc:
            problems.append(
                f"could not update the failure database {database.root} ({exc}); failing "
                "seeds are in the report, but will not be replayed first next time"
            )
    return problems


def shrunk_path(out_dir: str | os.PathLike[str], path: str, group: str, seed: int) -> str:
    """Where the falsifying example of one cause is written."""
    stem = Path(path).stem or "scenario"
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", group).strip("-")
    return os.path.join(os.fspath(out_dir), f"{stem}.{safe}.seed{seed}.yaml")


def write_examples(explorations: Sequence[Exploration]) -> None:
    """Write each group's falsifying example to its path (one file per group)."""
    for found in explorations:
        for group in found.groups():
            if group.example is not None:
                path = Path(group.example.path)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(group.example.text, encoding="utf-8")


def relocate(explorations: Sequence[Exploration], out_dir: str | os.PathLike[str]) -> None:
    """Point every example at ``out_dir`` (merged shards' examples came from their own
    folders); its file header's replay command and its violations' positions follow."""
    for found in explorations:
        moved = {}
        for cause, e in found.examples.items():
            new = os.path.join(os.fspath(out_dir), os.path.basename(e.path))
            text = e.text.replace(f"turnsim run {e.path} ", f"turnsim run {new} ", 1)
            failures = tuple(
                attrs.evolve(f, where=new + f.where[len(e.path) :])
                if f.where.startswith(e.path + ":")
                else f
                for f in e.failures
            )
            moved[cause] = attrs.evolve(e, path=new, text=text, failures=failures)
        found.examples = moved


def write_report(
    out_dir: str | os.PathLike[str], explorations: Sequence[Exploration], run: dict[str, Any]
) -> str:
    """Write ``report.json`` into ``out_dir`` (beside the examples); return its path.

    ``run`` (how it ran: executor, store, wall time) is kept apart from the findings,
    which are the same whatever ran them.
    """
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(os.fspath(out_dir), "report.json")
    doc = {**report_json(explorations), "run": run}
    Path(path).write_text(dumps(doc) + "\n", encoding="utf-8")
    return path


def merge_reports(paths: Sequence[str]) -> list[Exploration]:
    """The explorations of several reports (files, or folders holding ``report.json``),
    merged (:func:`sim.scenario.exploration.merge`); raises :class:`ReportError`."""
    import json

    parts = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            path = path / "report.json"
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ReportError(f"{path}: cannot read ({exc.strerror or exc})") from None
        except ValueError as exc:
            raise ReportError(f"{path}: not JSON ({exc})") from None
        parts.extend((str(path), e) for e in read_report(doc, str(path)))
    return merge(parts)


def describe(found: Exploration, *, show: int = 10) -> list[str]:
    """Lines for people: one block per group with its falsifying example, then the
    failing seeds' replay commands (``show`` per group; 0: all; the report has every one).
    """
    variant = f" [{'+'.join(found.variants)}]" if found.variants else ""
    shard = f" shard {found.shard}" if found.shard else ""
    head = f"{found.scenario}{variant} ({found.path}){shard}: "
    notes = []
    if found.replayed:
        notes.append(f"{len(found.replayed)} remembered seed(s) replayed first")
    if found.missing_shards:
        notes.append(f"shards {', '.join(found.missing_shards)} missing")
    tail = f" ({'; '.join(notes)})" if notes else ""
    races = [
        f"  race window {w}: hit by {found.race_hits.get(w, 0)} of {found.runs} seeds"
        + (f" (at least {need} needed)" if need else " (every run must)")
        for w, need in found.race_windows.items()
    ]
    races += [f"  FAILED: {short}" for short in found.races_short()]
    if not found.failed:
        verdict = "passed" if found.passed else "passed, but a race window was missed"
        return [head + f"all {found.runs} seeds {verdict}" + tail, *races]
    groups = found.groups()
    lines = [
        head + f"{len(found.failed)} of {found.runs} seeds failed, "
        f"{len(groups)} distinct failure{'s' if len(groups) != 1 else ''}" + tail,
        *races,
    ]
    for n, group in enumerate(groups, start=1):
        seeds = group.seeds
        first = group.first
        lines.append(
            f"  #{n} {group.first_violation}: {len(seeds)} seed{'s' if len(seeds) != 1 else ''}"
        )
        lines.append(f"    first (seed {first.seed}): {one_line(first.failures[0])}")
        if first.failures[0].where:
            lines.append(
                f"      caused by step {first.failures[0].step} at {first.failures[0].where}"
            )
        example = group.example
        if example is not None:
            lines.append(
                f"    falsifying example: {example.path} ({example.size}; was "
                f"{example.original_size}; {example.runs} runs tried)"
            )
            lines.append(f"      {example.replay}")
            shown = list(dict.fromkeys(failure_group(f) for f in example.failures))
            lines.append(f"      shows: {', '.join(shown) or 'nothing (it passed)'}")
        listed = seeds if show <= 0 else seeds[:show]
        width = len(str(max(f.seed for f in listed)))
        for f in listed:
            lines.append(f"    seed {f.seed:<{width}}  {f.replay}")
        if len(listed) < len(seeds):
            lines.append(
                f"    ... and {len(seeds) - len(listed)} more (every seed, with its replay "
                "command, is in the report; --show 0 lists them here)"
            )
    return lines


__all__ = [
    "Listener",
    "Outcome",
    "Settings",
    "Target",
    "batch_size",
    "describe",
    "explore",
    "merge_reports",
    "open_executor",
    "plan",
    "plan_rerun",
    "relocate",
    "shrunk_path",
    "write_examples",
    "write_report",
]


async def explore_scenario(
    scenario: Scenario,
    seeds: range,
    *,
    variants: Iterable[str] = (),
    store: StoreSpec = SQLITE,
    fresh: FreshStore | None = None,
    on_result: Callable[[Scenario, int, ScenarioResult], None] | None = None,
    on_start: Callable[[Exploration], None] | None = None,
) -> Exploration:
    """Explore ``seeds`` in this process, one after another, each run on ``store`` (or on
    the stores ``fresh`` hands out): for callers that hold their own stores, as ``turnsim
    conformance`` does. No failure database, no shrinking, no re-check on SQLite."""
    chosen = parse_variants(list(variants))
    found = Exploration(scenario.name, scenario.path, "", chosen, seeds)
    found.race_windows = declared_windows(scenario.steps)
    if on_start is not None:
        on_start(found)
    for seed in seeds:
        result = await run_scenario(scenario, seed=seed, variants=chosen, store=store, fresh=fresh)
        failed = (
            () if result.passed else (SeedFailure(seed, tuple(result.failures), result.replay),)
        )
        faults = sum(1 for e in result.events if e["event"] == "fault.injected")
        hit = windows_hit(result.events)
        found.add(
            BatchResult(
                (seed,),
                1,
                result.turns,
                result.switches,
                faults,
                result.virtual_ms,
                result.wall_s,
                failed,
                races=tuple((w, int(w in hit)) for w in found.race_windows),
            )
        )
        if on_result is not None:
            on_result(scenario, seed, result)
    found.finish()
    return found
