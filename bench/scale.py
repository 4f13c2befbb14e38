"""Scale and memory: 10,000 concurrent conversations x 5 turns in one process.

Peak RSS is this process's high-water mark (``getrusage``) right after the simulation,
so run the script on its own (``run_all.py`` gives it a fresh process). Also measured:
the process before the simulation (interpreter, imports, open store: the baseline the
memory figure is divided by), the resident memory once every conversation is open and
idle (cost of an idle conversation), and wall seconds per million stored snapshots
against one raw ``executemany`` of the same rows (measured after the peak is read).
"""

from __future__ import annotations

import os
import tempfile

import anyio
from figures import Report, parse_args, peak_rss_bytes, progress, rss_bytes, step
from workload import (
    SimRun,
    SQLiteTurnStore,
    quiet_logs,
    raw_executemany,
    read_snapshot_rows,
    simulate,
)

GOAL_MB = 200
MB = 1024 * 1024


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(__doc__, argv)
    quiet_logs()
    conversations, turns = (1000, 5) if args.quick else (10_000, 5)
    report = Report(
        "scale",
        f"Scale and memory: {conversations:,} concurrent conversations x {turns} turns",
        args.quick,
        columns=["measure", "value"],
    )
    with tempfile.TemporaryDirectory(prefix="turnsim-bench-") as tmp, progress() as bar:
        path = os.path.join(tmp, "scale.db")
        memory: dict[str, int] = {}

        async def run() -> SimRun:
            store = await SQLiteTurnStore.open(path)
            try:
                memory["before"] = rss_bytes()
                with step(bar, "simulation (asyncio)", conversations * turns) as advance:
                    return await simulate(
                        store,
                        conversations,
                        turns,
                        on_turn=advance,
                        on_idle=lambda: memory.setdefault("idle", rss_bytes()),
                    )
            finally:
                await store.close()

        sim = anyio.run(run, backend="asyncio")
        memory["peak"] = peak_rss_bytes()
        rows = read_snapshot_rows(path)
        with step(bar, "raw executemany (same rows)"):
            raw_s = raw_executemany(os.path.join(tmp, "raw.db"), rows, repeat=1)

    peak_mb = memory["peak"] / MB
    idle_kib = (memory["idle"] - memory["before"]) / conversations / 1024
    per_million = sim.wall_s / sim.snapshots * 1e6
    raw_per_million = raw_s / len(rows) * 1e6
    report.row("stored snapshots", sim.snapshots)
    report.row("wall seconds", sim.wall_s)
    report.row("seconds per million stored snapshots", per_million)
    report.row("  raw executemany, same rows: seconds per million", raw_per_million)
    report.row("peak RSS (MB)", peak_mb)
    report.row("  RSS before the simulation (MB)", memory["before"] / MB)
    report.row("  RSS with every conversation open and idle (MB)", memory["idle"] / MB)
    report.row("  idle conversation (KiB each)", idle_kib)
    report.row(
        "  peak per conversation above baseline (KiB)",
        (memory["peak"] - memory["before"]) / conversations / 1024,
    )
    report.row("group-commit batches / mean batch", f"{sim.batches:,} / {sim.mean_batch:.0f}")
    report.ratio(
        f"peak RSS, MB (goal: under {GOAL_MB})",
        peak_mb,
        f"<= {GOAL_MB}",
        note="an absolute budget, not a ratio; the next figure divides by the baseline",
    )
    report.ratio("peak RSS / RSS before the simulation", memory["peak"] / memory["before"])
    report.ratio("seconds per million snapshots / raw executemany", per_million / raw_per_million)
    report.details = {
        "simulation": sim.to_json(),
        "rss_bytes": memory,
        "idle_conversation_kib": idle_kib,
        "seconds_per_million_snapshots": per_million,
        "raw_seconds_per_million": raw_per_million,
    }
    report.finish()
    return report


if __name__ == "__main__":
    main()
