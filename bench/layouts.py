"""The real server's layout: what the normalized store costs next to the SQLite store.

The persist workload (conversations x turns with profile switches, some mid-inference)
runs through the simulation into a SQLite store and into a normalized store (the real
layout: each save also writes its turn row, its content-addressed blocks and one
membership row per block), alternately, twice each; the best run of each is kept and the
normalized store's snapshots per second are divided by the SQLite store's. The same rows
are then replayed through ``store.save`` on both (no simulation), and the files' sizes
are compared (the normalized one holds the snapshot log and the real tables).
"""

from __future__ import annotations

import os
import tempfile

import anyio
from figures import Report, parse_args, progress, step
from workload import SimRun, quiet_logs, read_snapshot_rows, replay, simulate

from persisters.normalized_store import open_normalized_store
from persisters.sqlite_store import SQLiteTurnStore

OPENERS = {"sqlite": SQLiteTurnStore.open, "normalized": open_normalized_store}


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(__doc__, argv)
    quiet_logs()
    conversations, turns = (100, 10) if args.quick else (500, 20)
    report = Report(
        "layouts",
        f"The real layout's store, {conversations:,} conversations x {turns} turns",
        args.quick,
        columns=["store", "path", "snapshots", "seconds", "snapshots/s", "/ sqlite store"],
    )
    best: dict[str, SimRun] = {}
    replayed: dict[str, float] = {}
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="turnsim-bench-") as tmp, progress() as bar:
        for attempt in range(2):
            for kind, opener in OPENERS.items():  # alternated: drift hits both alike
                path = os.path.join(tmp, f"{kind}{attempt}.db")

                async def run_sim(path: str = path, kind: str = kind, opener=opener) -> SimRun:
                    store = await opener(path)
                    try:
                        with step(
                            bar, f"simulation on the {kind} store", conversations * turns
                        ) as advance:
                            return await simulate(store, conversations, turns, on_turn=advance)
                    finally:
                        await store.close()

                sim = anyio.run(run_sim, backend="asyncio")
                if kind not in best or sim.wall_s < best[kind].wall_s:
                    best[kind] = sim
                sizes[kind] = sum(
                    os.path.getsize(p) for p in (path, f"{path}-wal") if os.path.exists(p)
                )
        rows = read_snapshot_rows(os.path.join(tmp, "sqlite0.db"))
        for kind, opener in OPENERS.items():

            async def run_replay(kind: str = kind, opener=opener) -> float:
                store = await opener(os.path.join(tmp, f"replay-{kind}.db"))
                try:
                    with step(bar, f"store.save replay on the {kind} store", len(rows)) as advance:
                        return await replay(store, rows, on_save=advance)
                finally:
                    await store.close()

            replayed[kind] = anyio.run(run_replay, backend="asyncio")

    base = best["sqlite"].snapshots_per_s
    for kind, sim in best.items():
        report.row(
            kind,
            "simulation",
            sim.snapshots,
            sim.wall_s,
            sim.snapshots_per_s,
            sim.snapshots_per_s / base,
        )
    n = len(rows)
    for kind, seconds in replayed.items():
        report.row(kind, "store.save replay", n, seconds, n / seconds, replayed["sqlite"] / seconds)
    report.ratio(
        "normalized store / SQLite store: simulation snapshots per second",
        best["normalized"].snapshots_per_s / base,
    )
    report.ratio(
        "normalized store / SQLite store: store.save replay",
        replayed["sqlite"] / replayed["normalized"],
    )
    report.ratio(
        "normalized / SQLite file size after the simulation", sizes["normalized"] / sizes["sqlite"]
    )
    report.details = {
        "simulations": {kind: sim.to_json() for kind, sim in best.items()},
        "replay_s": replayed,
        "file_bytes": sizes,
    }
    report.finish()
    return report


if __name__ == "__main__":
    main()
