"""Persist throughput: the simulation's stored snapshots per second vs raw executemany.

A simulation of 1,000 conversations x 20 turns with profile switches (every 5th turn,
every other one while an inference is in flight) saves through the snapshot hook and the
final persister into a SQLite store. Its stored snapshot rows per second (wall clock, the
whole simulation included) are divided by the rate of one raw ``executemany`` of the very
same rows into the same schema (indexes, WAL, synchronous=NORMAL) in one transaction, the
best of three such runs.

A second figure replays the same rows through ``SQLiteTurnStore.save`` without the
simulation (one task per conversation, each save awaited), to separate the store's cost
from the simulation's. ``--profile`` also records a pyinstrument profile of the
simulation (bench/results/persist_profile.txt and .html).
"""

from __future__ import annotations

import os
import tempfile

import anyio
import sniffio
from figures import RESULTS, Report, err, parse_args, progress, step
from rich.progress import Progress
from workload import (
    SimRun,
    SQLiteTurnStore,
    instant_batches,
    quiet_logs,
    raw_executemany,
    read_snapshot_rows,
    replay,
    simulate,
    store_sql,
)

GOAL = ">= 0.5"


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(__doc__, argv, profile="also write a pyinstrument profile of the simulation")
    quiet_logs()
    conversations, turns = (100, 10) if args.quick else (1000, 20)
    report = Report(
        "persist",
        f"Persist throughput, {conversations:,} conversations x {turns} turns",
        args.quick,
        columns=[
            "path",
            "snapshots",
            "seconds",
            "snapshots/s",
            "batches",
            "mean batch",
            "/ raw executemany",
        ],
    )
    # (label, latency jitter, backend); the first is the headline.
    runs = [("fixed latencies", 0, "asyncio"), ("+-10 ms latency jitter", 10, "asyncio")]
    if not args.quick:
        runs.append(("fixed latencies", 0, "trio"))
    sims: list[tuple[str, SimRun, float]] = []
    with tempfile.TemporaryDirectory(prefix="turnsim-bench-") as tmp, progress() as bar:
        for i, (label, jitter, backend) in enumerate(runs):
            sim_db = os.path.join(tmp, f"sim{i}.db")

            async def run_sim(
                path: str = sim_db, jitter: int = jitter, label: str = label
            ) -> SimRun:
                store = await SQLiteTurnStore.open(path)
                try:
                    description = f"simulation, {label} ({sniffio.current_async_library()})"
                    with step(bar, description, conversations * turns) as advance:
                        return await simulate(
                            store, conversations, turns, jitter_ms=jitter, on_turn=advance
                        )
                finally:
                    await store.close()

            sim = anyio.run(run_sim, backend=backend)
            rows = read_snapshot_rows(sim_db)
            assert len(rows) == sim.snapshots
            raw_s = raw_executemany(os.path.join(tmp, f"raw{i}.db"), rows)
            sims.append((label, sim, raw_s))
            if i == 0:
                headline_rows = rows
            del rows

        async def run_replay() -> tuple[float, int, int]:
            store = await SQLiteTurnStore.open(os.path.join(tmp, "replay.db"))
            try:
                with step(bar, "store.save replay (same rows)", len(headline_rows)) as advance:
                    seconds = await replay(store, headline_rows, on_save=advance)
                return seconds, store.writer.batches, store.writer.ops
            finally:
                await store.close()

        replay_s, replay_batches, replay_ops = anyio.run(run_replay, backend="asyncio")
        batches = instant_batches(headline_rows)
        with step(bar, "the store's SQL alone, one commit per virtual instant"):
            ceiling_s = store_sql(os.path.join(tmp, "ceiling.db"), batches)

        if args.profile:
            profile_simulation(bar, os.path.join(tmp, "profiled.db"), args.quick)

    n = len(headline_rows)
    for label, sim, raw_s in sims:
        rate = sim.snapshots / raw_s
        report.row(
            f"simulation -> store, {label} ({sim.backend})",
            sim.snapshots,
            sim.wall_s,
            sim.snapshots_per_s,
            sim.batches,
            sim.mean_batch,
            sim.snapshots_per_s / rate,
        )
        report.row(
            "  raw executemany of those rows (best of 3)",
            sim.snapshots,
            raw_s,
            rate,
            1,
            sim.snapshots,
            1.0,
        )
    raw_rate = n / sims[0][2]
    report.row(
        "store.save replay of the first rows, no simulation",
        n,
        replay_s,
        n / replay_s,
        replay_batches,
        replay_ops / replay_batches,
        (n / replay_s) / raw_rate,
    )
    report.row(
        "the store's SQL alone, one commit per virtual instant (no Python)",
        n,
        ceiling_s,
        n / ceiling_s,
        len(batches),
        n / len(batches),
        (n / ceiling_s) / raw_rate,
    )
    label, sim, raw_s = sims[0]
    report.ratio(
        f"persist throughput: simulation ({label}) / raw executemany",
        sim.snapshots_per_s / raw_rate,
        GOAL,
    )
    for label, sim, raw_s in sims[1:]:
        report.ratio(
            f"same, {label} ({sim.backend}) / its raw executemany",
            sim.snapshots_per_s / (sim.snapshots / raw_s),
        )
    report.ratio("store.save replay / raw executemany (no simulation)", (n / replay_s) / raw_rate)
    report.ratio(
        "ceiling: the store's SQL at the simulation's commits / raw executemany",
        (n / ceiling_s) / raw_rate,
        note="the store's statements alone, one commit per virtual instant (the simulation "
        "commits at least that often): no figure of the simulation on this schema can "
        "exceed it",
    )
    report.details = {
        "simulations": [
            {"label": label, "raw_executemany_s": raw_s, **sim.to_json()}
            for label, sim, raw_s in sims
        ],
        "replay_s": replay_s,
        "replay_batches": replay_batches,
        "ceiling_s": ceiling_s,
        "ceiling_batches": len(batches),
        "synchronous": "NORMAL (WAL) on every side",
    }
    report.finish()
    return report


def profile_simulation(bar: Progress, path: str, quick: bool) -> None:
    """A pyinstrument profile of a smaller simulation (the persist path)."""
    from pyinstrument import Profiler

    conversations, turns = (100, 5) if quick else (300, 10)

    async def run() -> None:
        store = await SQLiteTurnStore.open(path)
        try:
            with step(bar, f"profile ({conversations}x{turns})"):
                profiler = Profiler(interval=0.0005, async_mode="disabled")
                profiler.start()
                await simulate(store, conversations, turns)
                profiler.stop()
        finally:
            await store.close()
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "persist_profile.txt").write_text(
            profiler.output_text(unicode=True, color=False, show_all=False)
        )
        (RESULTS / "persist_profile.html").write_text(profiler.output_html())
        err.print(f"[dim]profile: {RESULTS / 'persist_profile.txt'}[/]")

    anyio.run(run, backend="asyncio")


if __name__ == "__main__":
    main()
