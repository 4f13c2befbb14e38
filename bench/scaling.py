"""Scaling curve: simulation throughput at 10, 100, 1,000 and 10,000 conversations.

Every point runs the same per-conversation work (3 turns, the persist workload's
profiles and switches) on a fresh store; each point's stored snapshots per second are
also divided by one raw ``executemany`` of that point's rows, so the curve can be read
with the machine's noise taken out. Flat means cost grows in proportion to work: the
headline divides the throughput at 10,000 conversations by the throughput at 1,000.
"""

from __future__ import annotations

import os
import tempfile

import anyio
from figures import Report, parse_args, progress, step
from workload import (
    SimRun,
    SQLiteTurnStore,
    quiet_logs,
    raw_executemany,
    read_snapshot_rows,
    simulate,
)

GOAL = ">= 0.8"
TURNS = 3


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(__doc__, argv)
    quiet_logs()
    sizes = (10, 100, 1000) if args.quick else (10, 100, 1000, 10_000)
    report = Report(
        "scaling",
        f"Scaling curve: conversations x {TURNS} turns",
        args.quick,
        columns=[
            "conversations",
            "snapshots",
            "seconds",
            "snapshots/s",
            "µs per snapshot",
            "mean batch",
            "/ raw executemany",
        ],
    )
    points: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="turnsim-bench-") as tmp, progress() as bar:
        for n in sizes:
            path = os.path.join(tmp, f"n{n}.db")

            async def run(n: int = n, path: str = path) -> SimRun:
                store = await SQLiteTurnStore.open(path)
                try:
                    with step(bar, f"{n:,} conversations", n * TURNS) as advance:
                        return await simulate(store, n, TURNS, on_turn=advance)
                finally:
                    await store.close()

            sim = anyio.run(run, backend="asyncio")
            rows = read_snapshot_rows(path)
            raw_s = raw_executemany(os.path.join(tmp, f"raw{n}.db"), rows, repeat=1)
            raw_rate = len(rows) / raw_s
            points[n] = {
                "snapshots": sim.snapshots,
                "seconds": sim.wall_s,
                "rate": sim.snapshots_per_s,
                "mean_batch": sim.mean_batch,
                "raw_rate": raw_rate,
                "vs_raw": sim.snapshots_per_s / raw_rate,
            }
            report.row(
                f"{n:,}",
                sim.snapshots,
                sim.wall_s,
                sim.snapshots_per_s,
                1e6 / sim.snapshots_per_s,
                sim.mean_batch,
                sim.snapshots_per_s / raw_rate,
            )
    top, ref = sizes[-1], 1000
    report.ratio(
        f"throughput at {top:,} / at {ref:,} conversations",
        points[top]["rate"] / points[ref]["rate"],
        GOAL if top != ref else None,
        note="flat = 1.0; the goal is this bench's reading of 'flat or close to it'",
    )
    report.ratio(
        f"throughput at {ref:,} / at 10 conversations", points[ref]["rate"] / points[10]["rate"]
    )
    report.ratio(
        f"(ours / raw) at {top:,} / (ours / raw) at {ref:,}",
        points[top]["vs_raw"] / points[ref]["vs_raw"],
    )
    report.details = {"turns": TURNS, "points": points}
    report.finish()
    return report


if __name__ == "__main__":
    main()
