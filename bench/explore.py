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


class Advance(Listener):
    """Advances a progress bar; adds up the CPU seconds the batches took where they ran."""

    def __init__(self, advance: Callable[[int], None]) -> None:
        self.advance = advance
        self.batch_cpu_s = 0.0

    def ran(self, found: Exploration, result: Any) -> None:
        self.advance(result.runs)
        self.batch_cpu_s += result.cpu_s


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


#: (key, measure label, scenario, runs, callable giving (runs, seconds)) per measurement
Measurement = tuple[str, str, str, int, Callable[[Callable[[int], None]], tuple[int, float]]]


def rounds_of(
    measurements: list[Measurement],
    rounds: int,
    bar: Any,
    report: Report,
    cpu: dict[str, list[float]],
) -> dict[str, float]:
    """Run every measurement ``rounds`` times, interleaved (a busy spell of the machine hits
    all of them alike), and keep each one's median runs per second (and the median CPU
    seconds per run its callable recorded in ``cpu``)."""
    samples: dict[str, list[float]] = {key: [] for key, *_ in measurements}
    for r in range(rounds):
        for key, label, scenario, n, run in measurements:
            with step(bar, f"{scenario}: {label} ({r + 1}/{rounds})", n) as advance:
                runs, seconds = run(advance)
            samples[key].append(runs / seconds)
    rates = {}
    for key, label, scenario, n, _ in measurements:
        ordered = sorted(samples[key])
        rates[key] = ordered[len(ordered) // 2]
        spread = f"{ordered[0]:,.1f}..{ordered[-1]:,.1f}" if rounds > 1 else "-"
        per_run = sorted(cpu[key])[len(cpu[key]) // 2] * 1000
        report.row(label, scenario, n, n / rates[key], rates[key], spread, per_run)
    return rates


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(__doc__, argv)
    quiet_logs()
    workers = cores()
    rounds = 1 if args.quick else 3
    sizes = (
        {"sqlite": 10, "memory": 150, "jobs": 300, "rare": 3000}
        if args.quick
        else {"sqlite": 30, "memory": 800, "jobs": 800, "rare": 5000}
    )
    report = Report(
        "explore",
        f"turnsim explore: runs per second ({workers} cores; median of {rounds} interleaved "
        "rounds, and their range)",
        args.quick,
        columns=["measure", "scenario", "runs", "seconds", "runs/s", "range", "CPU ms/run"],
    )
    load_before = os.getloadavg()[0]
    cpu: dict[str, list[float]] = {}

    def store_run(key: str, path: Path, store: Any, n: int, context: Any = None) -> Any:
        def run(advance: Callable[[int], None]) -> tuple[int, float]:
            before = time.process_time()  # every thread of this process (the SQLite hops')
            with (context or contextlib.nullcontext)():
                rate = store_rate(path, store, n, lambda: advance(1))
            cpu.setdefault(key, []).append((time.process_time() - before) / n)
            return n, n / rate

        return run

    def explore_run(key: str, paths: list[Path], n: int, store: str, make: Any) -> Any:
        """An exploration; also keeps its CPU seconds per run: this process's, plus the
        batches' where they ran elsewhere (a load-independent view of the overhead)."""

        def run(advance: Callable[[int], None]) -> tuple[int, float]:
            listener = Advance(advance)
            before = time.process_time()
            found, seconds = timed(paths, range(n), store, make, listener=listener)
            here = time.process_time() - before
            assert all(e.passed for e in found), "the default build must pass every seed"
            runs = sum(e.runs for e in found)
            elsewhere = 0.0 if make is InProcess else listener.batch_cpu_s
            cpu.setdefault(key, []).append((here + elsewhere) / runs)
            return runs, seconds

        return run

    with progress() as bar:
        # the store comparison behind the default: one process, one seed after another
        comparison: list[Measurement] = []
        for name, path in SCENARIOS.items():
            n = sizes["sqlite"]
            comparison += [
                (
                    f"{name}/sqlite-file",
                    "one process, SQLite file, thread hop per statement",
                    name,
                    n,
                    store_run(f"{name}/sqlite-file", path, StoreSpec("sqlite"), n),
                ),
                (
                    f"{name}/sqlite-memory",
                    "one process, SQLite :memory:, thread hop per statement",
                    name,
                    2 * n,
                    store_run(f"{name}/sqlite-memory", path, SQLiteInMemory(), 2 * n),
                ),
                (
                    f"{name}/sqlite-memory-inline",
                    "one process, SQLite :memory:, no thread hop",
                    name,
                    3 * n,
                    store_run(
                        f"{name}/sqlite-memory-inline",
                        path,
                        SQLiteInMemory(),
                        3 * n,
                        inline_thread_hops,
                    ),
                ),
                (
                    f"{name}/memory",
                    "one process, memory store",
                    name,
                    sizes["memory"] // 4,
                    store_run(f"{name}/memory", path, StoreSpec("memory"), sizes["memory"] // 4),
                ),
            ]
        rates = rounds_of(comparison, rounds, bar, report, cpu)

        # warm the fork server once (a command pays this once, before its first batch)
        started = time.perf_counter()
        pool = Processes(workers)
        list(pool.map(abs, [1]))
        pool.close()
        warm_s = time.perf_counter() - started
        report.row("fork server and worker start-up, first time", "-", 0, warm_s, None, "-")

        # 1. default explore / --store sqlite --jobs 1
        default: list[Measurement] = []
        for name, path in SCENARIOS.items():
            default += [
                (
                    f"{name}/baseline",
                    "explore --store sqlite --jobs 1",
                    name,
                    sizes["sqlite"],
                    explore_run(f"{name}/baseline", [path], sizes["sqlite"], "sqlite", InProcess),
                ),
                (
                    f"{name}/default",
                    f"explore (default: memory store, --jobs {workers})",
                    name,
                    sizes["memory"],
                    explore_run(
                        f"{name}/default",
                        [path],
                        sizes["memory"],
                        "memory",
                        lambda: Processes(workers),
                    ),
                ),
            ]
        rates.update(rounds_of(default, rounds, bar, report, cpu))

        # 2. --jobs 2 / --jobs 1 and 3. Dask LocalCluster / --jobs 2 (random_switches)
        from distributed import LocalCluster

        from sim.scenario.cluster import DaskExecutor

        path, n = SCENARIOS["random_switches"], sizes["jobs"]
        with LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster:
            address = cluster.scheduler_address
            scaling: list[Measurement] = [
                (
                    "jobs1",
                    "explore --jobs 1 (memory store)",
                    "random_switches",
                    n,
                    explore_run("jobs1", [path], n, "memory", InProcess),
                ),
                (
                    "jobs2",
                    "explore --jobs 2 (memory store)",
                    "random_switches",
                    n,
                    explore_run("jobs2", [path], n, "memory", lambda: Processes(2)),
                ),
                (
                    "dask",
                    "explore --scheduler (LocalCluster, 2 worker processes)",
                    "random_switches",
                    n,
                    explore_run("dask", [path], n, "memory", lambda: DaskExecutor(address)),
                ),
            ]
            rates.update(rounds_of(scaling, rounds, bar, report, cpu))

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
                "-",
            )

    # the machine is shared: say how busy it was (more runnable tasks than cores, and the
    # multi-process figures measure the competition as much as turnsim)
    load_after = os.getloadavg()[0]
    report.row(
        f"load average (1 min): {load_before:.1f} before, {load_after:.1f} after",
        "-",
        0,
        None,
        None,
        "-",
    )
    for name in SCENARIOS:
        report.ratio(
            f"runs/s on {name}: default explore / --store sqlite --jobs 1",
            rates[f"{name}/default"] / rates[f"{name}/baseline"],
            ">= 10",
        )
        report.ratio(
            f"runs/s on {name}, one process: memory store / SQLite :memory: without thread hops",
            rates[f"{name}/memory"] / rates[f"{name}/sqlite-memory-inline"],
            note="why the memory store is the default",
        )
    report.ratio(
        "runs/s: --jobs 2 / --jobs 1 (memory store)", rates["jobs2"] / rates["jobs1"], ">= 1.7"
    )
    report.ratio(
        "runs/s: Dask LocalCluster (2 workers) / --jobs 2", rates["dask"] / rates["jobs2"], ">= 0.8"
    )
    cpu_per_run = {key: sorted(v)[len(v) // 2] for key, v in cpu.items()}
    for name in SCENARIOS:
        report.ratio(
            f"CPU per run on {name}, one process: SQLite :memory: without thread hops / "
            "memory store",
            cpu_per_run[f"{name}/sqlite-memory-inline"] / cpu_per_run[f"{name}/memory"],
            note="the store comparison in CPU time, which the machine's load does not move",
        )
    report.ratio(
        "CPU per run: --jobs 2 / --jobs 1 (parallel overhead; 1 = none)",
        cpu_per_run["jobs2"] / cpu_per_run["jobs1"],
        note="independent of how busy the machine is, unlike the wall-clock ratios",
    )
    report.ratio(
        "CPU per run: Dask LocalCluster / --jobs 2",
        cpu_per_run["dask"] / cpu_per_run["jobs2"],
        note="the Dask workers' batches and this process (the LocalCluster's scheduler "
        "thread included)",
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
        "rounds": rounds,
        "workers": workers,
        "load_average": [load_before, load_after],
        "fork_server_start_s": warm_s,
        "rates": rates,
        "cpu_s_per_run": cpu_per_run,
        "rare": {k: {"seed": w.seed, "runs": w.runs, "seconds": w.at_s} for k, w in first.items()},
    }
    report.finish()
    return report


if __name__ == "__main__":
    main()
