"""Explore at speed and scale: runs per second by store, by worker count and on Dask, and
how long a rare race takes to find.

Every figure divides by a baseline measured in the same run, through the same library call
as ``turnsim explore`` (:func:`sim.scenario.explore.explore`), on the default build (every
seed passes, so nothing is shrunk or re-checked):

1. default explore (memory store, one worker process per core) / ``--store sqlite --jobs
   1``, on ``inventory_to_planner.yaml`` and ``random_switches.yaml`` (goal >= 10);
2. ``--jobs 2`` / ``--jobs 1``, both on the memory store (goal >= 1.7 on 2 cores);
3. a Dask ``LocalCluster`` of 2 worker processes / ``--jobs 2`` (goal >= 0.8);
4. seeds and wall seconds until the first failure of ``late-snapshot-runtime`` on
   ``bench/rare_inflight_switch.yaml`` (a switch at a random moment in 10 s, in flight on
   few seeds), default explore against ``--store sqlite --jobs 1``.

Before them, the store comparison that chose the default: one seed after another in one
process on a SQLite file, SQLite ``:memory:`` (with a worker-thread hop per statement, as
the store runs, and without: every hop made an inline call), and the memory store.

Worker start-up is inside every multi-process figure, except the fork server's one-time
start (measured on its own row; a ``turnsim explore`` command pays it once). The Dask
cluster is started before its clock starts, as a cluster outlives the explorations sent
to it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from figures import BENCH, Report, parse_args, progress, step
from workload import quiet_logs

from persisters.sqlite_store import SQLiteTurnStore
from persisters.stores import StoreSpec
from sim.scenario.batches import Source
from sim.scenario.executors import Executor, InProcess, Processes, cores
from sim.scenario.exploration import Exploration
from sim.scenario.explore import Listener, Settings, Target, explore
from sim.scenario.parse import read_scenario_text
from sim.scenario.runner import run_scenario

ROOT = BENCH.parent
SCENARIOS = {
    "inventory_to_planner": ROOT / "scenarios" / "inventory_to_planner.yaml",
    "random_switches": ROOT / "scenarios" / "random_switches.yaml",
}
RARE = BENCH / "rare_inflight_switch.yaml"
RARE_VARIANT = ("late-snapshot-runtime",)


def source(path: Path) -> Source:
    return Source(str(path.relative_to(ROOT)), read_scenario_text(path))


# -- the store comparison ---------------------------------------------------------------


class SQLiteInMemory:
    """A store spec for SQLite ``:memory:`` (not a ``--store`` kind: measured here only)."""

    kind = "sqlite-memory"

    async def open(self, **kwargs: Any) -> SQLiteTurnStore:
        return await SQLiteTurnStore.open(":memory:", on_conflict=kwargs["on_conflict"])


@contextlib.contextmanager
def inline_thread_hops() -> Iterator[None]:
    """Every ``anyio.to_thread.run_sync`` becomes a plain call on the event loop's thread:
    what SQLite ``:memory:`` would cost without a thread hop per statement."""
    real = anyio.to_thread.run_sync

    async def inline(fn: Callable[..., Any], *args: Any, **_: Any) -> Any:
        return fn(*args)

    anyio.to_thread.run_sync = inline  # type: ignore[assignment]
    try:
        yield
    finally:
        anyio.to_thread.run_sync = real  # type: ignore[assignment]


def store_rate(path: Path, store: Any, seeds: int, advance: Callable[[], None]) -> float:
    """Runs per second of one seed after another, in this process, on ``store``."""
    scenario = source(path).scenario()

    async def main() -> None:
        for seed in range(seeds):
            await run_scenario(scenario, seed=seed, store=store)
            advance()

    started = time.perf_counter()
    anyio.run(main)
    return seeds / (time.perf_counter() - started)


# -- explorations ---------------------------------------------------------------------


def timed(
    paths: list[Path],
    seeds: range,
    store: str,
    make_executor: Callable[[], Executor],
    *,
    variants: tuple[str, ...] = (),
    listener: Listener | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> tuple[list[Exploration], float]:
    """An exploration as ``turnsim explore`` runs it (executor start and stop included)."""
    targets = [Target(source(p), variants, seeds) for p in paths]
    started = time.perf_counter()
    executor = make_executor()
    try:
        outcome = explore(
            targets,
            Settings(store=store, shrink=False),
            executor,
            listener=listener,
            should_stop=should_stop,
        )
    finally:
        executor.close()
    return outcome.explorations, time.perf_counter() - started


def runs_per_s(found: list[Exploration], seconds: float) -> float:
    assert all(e.passed for e in found), "the default build must pass every seed"
    return sum(e.runs for e in found) / seconds


class Advance(Listener):
    def __init__(self, advance: Callable[[int], None]) -> None:
        self.advance = advance

    def ran(self, found: Exploration, result: Any) -> None:
        self.advance(result.runs)


class FirstFailure(Listener):
    """Stops the exploration at its first failing seed; when, and after how many runs."""

    def __init__(self, advance: Callable[[int], None]) -> None:
        self.advance = advance
        self.started = time.perf_counter()
        self.at_s: float | None = None
        self.runs = 0
        self.seed: int | None = None

    def ran(self, found: Exploration, result: Any) -> None:
        self.runs += result.runs
        self.advance(result.runs)
        if found.failed and self.at_s is None:
            self.at_s = time.perf_counter() - self.started
            self.seed = found.failed[0].seed

    def stop(self) -> bool:
        return self.at_s is not None


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(__doc__, argv)
    quiet_logs()
    workers = cores()
    sizes = (
        {"sqlite": 10, "memory": 150, "jobs": 300, "rare": 3000}
        if args.quick
        else {"sqlite": 100, "memory": 2000, "jobs": 2000, "rare": 5000}
    )
    report = Report(
        "explore",
        f"turnsim explore: runs per second ({workers} cores)",
        args.quick,
        columns=["measure", "scenario", "runs", "seconds", "runs/s"],
    )
    rates: dict[str, float] = {}
    load_before = os.getloadavg()[0]
    with progress() as bar:
        # the store comparison behind the default
        stores = (
            ("SQLite file, thread hop per statement", StoreSpec("sqlite"), sizes["sqlite"], None),
            (
                "SQLite :memory:, thread hop per statement",
                SQLiteInMemory(),
                sizes["sqlite"] * 2,
                None,
            ),
            (
                "SQLite :memory:, no thread hop",
                SQLiteInMemory(),
                sizes["sqlite"] * 3,
                inline_thread_hops,
            ),
            ("memory store", StoreSpec("memory"), sizes["memory"] // 4, None),
        )
        for name, path in SCENARIOS.items():
            for label, store, n, context in stores:
                with (
                    step(bar, f"{name}: {label}", n) as advance,
                    (context or contextlib.nullcontext)(),
                ):
                    rate = store_rate(path, store, n, advance)
                report.row(f"one process, {label}", name, n, n / rate, rate)
                rates[f"{name}/{label}"] = rate

        # warm the fork server once (a command pays this once, before its first batch)
        started = time.perf_counter()
        pool = Processes(workers)
        list(pool.map(abs, [1]))
        pool.close()
        report.row(
            "fork server and worker start-up, first time",
            "-",
            0,
            time.perf_counter() - started,
            None,
        )

        # 1. default explore / --store sqlite --jobs 1
        for name, path in SCENARIOS.items():
            n = sizes["sqlite"]
            with step(bar, f"{name}: --store sqlite --jobs 1", n) as advance:
                found, s = timed([path], range(n), "sqlite", InProcess, listener=Advance(advance))
            rates[f"{name}/baseline"] = runs_per_s(found, s)
            report.row("explore --store sqlite --jobs 1", name, n, s, rates[f"{name}/baseline"])
            n = sizes["memory"]
            with step(bar, f"{name}: default explore", n) as advance:
                found, s = timed(
                    [path],
                    range(n),
                    "memory",
                    lambda: Processes(workers),
                    listener=Advance(advance),
                )
            rates[f"{name}/default"] = runs_per_s(found, s)
            report.row(
                f"explore (default: memory, --jobs {workers})", name, n, s, rates[f"{name}/default"]
            )

        # 2. --jobs 2 / --jobs 1 and 3. Dask LocalCluster / --jobs 2 (random_switches)
        path, n = SCENARIOS["random_switches"], sizes["jobs"]
        for jobs, make in ((1, InProcess), (2, lambda: Processes(2))):
            with step(bar, f"random_switches: --jobs {jobs}", n) as advance:
                found, s = timed([path], range(n), "memory", make, listener=Advance(advance))
            rates[f"jobs{jobs}"] = runs_per_s(found, s)
            report.row(f"explore --jobs {jobs}", "random_switches", n, s, rates[f"jobs{jobs}"])
        from distributed import LocalCluster

        from sim.scenario.cluster import DaskExecutor

        with LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster:
            address = cluster.scheduler_address
            with step(bar, "random_switches: Dask LocalCluster, 2 workers", n) as advance:
                found, s = timed(
                    [path],
                    range(n),
                    "memory",
                    lambda: DaskExecutor(address),
                    listener=Advance(advance),
                )
        rates["dask"] = runs_per_s(found, s)
        report.row(
            "explore --scheduler (LocalCluster, 2 workers)", "random_switches", n, s, rates["dask"]
        )

        # 4. seeds and time until the first failure of a rare race
        first: dict[str, FirstFailure] = {}
        for label, store, make in (
            ("--store sqlite --jobs 1", "sqlite", InProcess),
            ("default explore", "memory", lambda: Processes(workers)),
        ):
            with step(bar, f"rare race: {label}", sizes["rare"]) as advance:
                watch = FirstFailure(advance)
                timed(
                    [RARE],
                    range(sizes["rare"]),
                    store,
                    make,
                    variants=RARE_VARIANT,
                    listener=watch,
                    should_stop=watch.stop,
                )
            first[label] = watch
            report.row(
                f"rare race, {label}: until the first failure (seed {watch.seed})",
                RARE.name,
                watch.runs,
                watch.at_s,
                None,
            )

    # the machine is shared: say how busy it was (more runnable tasks than cores: the
    # multi-process figures measure the competition, not turnsim)
    load_after = os.getloadavg()[0]
    report.row(
        f"load average (1 min): {load_before:.1f} before, {load_after:.1f} after",
        "-",
        0,
        None,
        None,
    )
    for name in SCENARIOS:
        report.ratio(
            f"runs/s on {name}: default explore / --store sqlite --jobs 1",
            rates[f"{name}/default"] / rates[f"{name}/baseline"],
            ">= 10",
        )
        report.ratio(
            f"runs/s on {name}, one process: memory store / SQLite :memory: without thread hops",
            rates[f"{name}/memory store"] / rates[f"{name}/SQLite :memory:, no thread hop"],
            note="why the memory store is the default",
        )
    report.ratio(
        "runs/s: --jobs 2 / --jobs 1 (memory store)", rates["jobs2"] / rates["jobs1"], ">= 1.7"
    )
    report.ratio(
        "runs/s: Dask LocalCluster (2 workers) / --jobs 2", rates["dask"] / rates["jobs2"], ">= 0.8"
    )
    slow, fast = first["--store sqlite --jobs 1"], first["default explore"]
    report.ratio(
        "rare race: seconds to the first failure, --store sqlite --jobs 1 / default explore",
        (slow.at_s or 0) / fast.at_s if fast.at_s else None,
        note=f"first failing seed {slow.seed} ({(slow.seed or 0) + 1} seeds); default explore "
        f"ran {fast.runs} seeds in {fast.at_s or 0:.2f}s before it reported one",
    )
    report.details = {
        "sizes": sizes,
        "workers": workers,
        "load_average": [load_before, load_after],
        "rates": rates,
        "rare": {k: {"seed": w.seed, "runs": w.runs, "seconds": w.at_s} for k, w in first.items()},
    }
    report.finish()
    return report


if __name__ == "__main__":
    main()
