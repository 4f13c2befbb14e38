"""The work explore hands out: batches of seeds and shrinks, each a plain function call.

A job is a frozen, picklable value holding all a worker needs: the scenario's source text
(so no shared filesystem is needed: a Dask worker on another machine parses the same
bytes), the seeds, the variants, the store spec and the anyio backend. :func:`run_batch`
and :func:`run_shrink` are synchronous (each runs its own event loop), so the same job
gives the same result in this process, in a worker process or on a cluster worker.

**Re-check.** A seed that fails on a store other than a SQLite file is run again on a
temporary SQLite file, the store ``turnsim run`` replays on, before it is reported: the
reported failures are the SQLite run's, so the printed replay command reproduces them. The
two runs' histories must be equal event for event (semantics do not depend on the store);
if they are not, the seed also fails with ``error:store-divergence`` naming the first
event that differs (a bug of turnsim's, never of the scenario's). The one designed
difference: where the SQLite file's write-once trigger refused a rewrite the other store
let through (the ``upsert-overwrite`` variant), the histories part there.
"""

from __future__ import annotations

import functools
import hashlib
import time
from typing import Any

import anyio
import attrs

from persisters.errors import TRIGGER_REFUSAL
from persisters.stores import SQLITE, StoreSpec
from sim.scenario.exploration import BatchResult, SeedFailure, SeedOutcome, switch_delays
from sim.scenario.model import Scenario
from sim.scenario.parse import parse_scenario
from sim.scenario.races import declared_windows, windows_hit
from sim.scenario.result import Failure, ScenarioResult
from sim.scenario.runner import run_scenario
from sim.scenario.shrink import ShrinkResult, shrink_failure

#: The failure a seed gets when its run differs between stores.
DIVERGENCE = "store-divergence"


@attrs.frozen
class Source:
    """A scenario file as read: its path (for messages and replay commands) and text."""

    path: str
    text: str = attrs.field(repr=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def scenario(self) -> Scenario:
        """The parsed scenario (parsed once per process)."""
        return _parse(self.path, self.text)


@functools.lru_cache(maxsize=64)
def _parse(path: str, text: str) -> Scenario:
    return parse_scenario(text, path)


@attrs.frozen
class SeedBatch:
    """Run ``source`` once per seed, in this order."""

    source: Source
    seeds: tuple[int, ...]
    variants: tuple[str, ...]
    store: str = "memory"
    backend: str = "asyncio"
    #: Also send back each seed's :class:`~sim.scenario.exploration.SeedOutcome` (a few
    #: numbers per seed: what ``explore --html`` draws).
    outcomes: bool = False


@attrs.frozen
class ShrinkJob:
    """Shrink the failure ``group`` of ``seed`` (see :func:`~sim.scenario.shrink.
    shrink_failure`); the result's file is meant for ``out_path``."""

    source: Source
    seed: int
    variants: tuple[str, ...]
    group: str
    out_path: str
    max_runs: int
    store: str = "memory"
    backend: str = "asyncio"


def run_batch(batch: SeedBatch) -> BatchResult:
    """Run every seed of a batch (failing ones re-checked on SQLite); figures summed."""
    return anyio.run(_run_batch, batch, backend=batch.backend)


def run_shrink(job: ShrinkJob) -> ShrinkResult:
    """Shrink one failing seed (candidates on the job's store, confirmed on SQLite)."""

    async def main() -> ShrinkResult:
        return await shrink_failure(
            job.source.scenario(),
            job.seed,
            job.variants,
            job.group,
            out_path=job.out_path,
            max_runs=job.max_runs,
            store=StoreSpec.parse(job.store),
        )

    return anyio.run(main, backend=job.backend)


async def _run_batch(batch: SeedBatch) -> BatchResult:
    scenario = batch.source.scenario()
    store = StoreSpec.parse(batch.store)
    started, cpu = time.perf_counter(), time.process_time()
    runs = turns = switches = faults = virtual_ms = 0
    failed: list[SeedFailure] = []
    outcomes: list[SeedOutcome] = []
    races = dict.fromkeys(declared_windows(scenario.steps), 0)
    for seed in batch.seeds:
        result = await run_guarded(scenario, seed, batch.variants, store)
        runs += 1
        if races:  # only scenarios that declare a race window pay for reading its events
            for window in windows_hit(result.events) & races.keys():
                races[window] += 1
        turns += result.turns
        switches += result.switches
        faults += sum(1 for e in result.events if e["event"] == "fault.injected")
        virtual_ms += result.virtual_ms
        if batch.outcomes:
            outcomes.append(SeedOutcome(seed, result.passed, switch_delays(result.events)))
        if not result.passed:
            failed.append(await _confirmed(scenario, seed, batch.variants, store, result))
    return BatchResult(
        seeds=batch.seeds,
        runs=runs,
        turns=turns,
        switches=switches,
        faults_injected=faults,
        virtual_ms=virtual_ms,
        wall_s=time.perf_counter() - started,
        failed=tuple(failed),
        cpu_s=time.process_time() - cpu,
        outcomes=tuple(outcomes),
        races=tuple(races.items()),
    )


async def run_guarded(
    scenario: Scenario, seed: int, variants: tuple[str, ...], store: StoreSpec
) -> ScenarioResult:
    """One run; an unexpected exception (a bug of ours) is that seed's failure
    (``error:<type>``) instead of the end of the exploration."""
    started = time.perf_counter()
    try:
        return await run_scenario(scenario, seed=seed, variants=variants, store=store)
    except Exception as exc:
        return ScenarioResult(
            scenario=scenario.name,
            path=scenario.path,
            seed=seed,
            variants=tuple(sorted(set(variants))),
            failures=[Failure("error", type(exc).__name__, str(exc))],
            turns=0,
            switches=0,
            checks=0,
            virtual_ms=0,
            wall_s=time.perf_counter() - started,
        )


async def _confirmed(
    scenario: Scenario,
    seed: int,
    variants: tuple[str, ...],
    store: StoreSpec,
    result: ScenarioResult,
) -> SeedFailure:
    """The failing seed as the SQLite file store shows it (see the module docstring)."""
    if store.kind == SQLITE.kind:
        return SeedFailure(seed, tuple(result.failures), result.replay)
    again = await run_guarded(scenario, seed, variants, SQLITE)
    failures = list(again.failures)
    difference = first_difference(result.events, again.events)
    if difference is not None and not _parted_by_trigger(result.events, again.events):
        failures.append(
            Failure(
                "error",
                DIVERGENCE,
                f"seed {seed} ran differently on the {store.kind} store and on a SQLite file "
                f"({difference}); the replay command shows the SQLite run, "
                f"`--store {store.kind}` the other (a turnsim bug: please report it)",
            )
        )
    return SeedFailure(seed, tuple(failures), again.replay)


def _parted_by_trigger(other: list[dict[str, Any]], sqlite: list[dict[str, Any]]) -> bool:
    """Whether the SQLite run's history parts from the other at a save the file's
    write-once trigger refused (by design: see :mod:`persisters.write_once`)."""
    for x, y in zip(other, sqlite, strict=False):
        if x != y:
            return TRIGGER_REFUSAL in str(y.get("error", ""))
    return False


def first_difference(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> str | None:
    """Where two histories first differ, in words; None when they are equal."""
    if a == b:
        return None
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            keys = sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))
            return f"event {i + 1} ({x.get('event')} vs {y.get('event')}) differs in {keys}"
    return f"one history has {len(a)} events, the other {len(b)}"


__all__ = [
    "DIVERGENCE",
    "SeedBatch",
    "ShrinkJob",
    "Source",
    "first_difference",
    "run_batch",
    "run_guarded",
    "run_shrink",
]
