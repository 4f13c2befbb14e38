"""Store settings: the store's page cache and WAL checkpointing vs SQLite's defaults.

``persisters.sqlite_database`` sets ``cache_size`` (``CACHE_KIB``) and checkpoints the WAL
from a background thread (``Checkpointer``; the writer itself only past
``WAL_SAFETY_PAGES``). This bench measures what they buy: the rows of a fixed-latency
simulation are replayed through ``SQLiteTurnStore.save`` (one task per conversation, each
save awaited) with SQLite's defaults (2,000 KiB cache, the writer checkpointing every
1,000 WAL pages), with the store's cache and a 10,000-page writer checkpoint but no
thread, and with the store's settings; rounds alternate, median of the rounds (here: the
mean of two). Same rows, same process, a fresh database each run.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
from figures import Report, parse_args, progress, step
from workload import SQLiteTurnStore, quiet_logs, read_snapshot_rows, replay, simulate

import persisters.sqlite_database as sqlite_database

KNOBS = ("CACHE_KIB", "WAL_AUTOCHECKPOINT_PAGES", "WAL_SAFETY_PAGES")
SQLITE_DEFAULTS = {
    "CACHE_KIB": 2000,
    "WAL_AUTOCHECKPOINT_PAGES": 1000,
    "WAL_SAFETY_PAGES": 1000,
    "thread": False,
}


def _no_request(self: Any) -> None:
    return None


@contextmanager
def settings(values: dict[str, Any]) -> Iterator[None]:
    """The module's knobs set to ``values``; ``thread: False`` keeps the checkpointer idle."""
    saved = {name: getattr(sqlite_database, name) for name in KNOBS}
    request = sqlite_database.Checkpointer.request
    for name in KNOBS:
        setattr(sqlite_database, name, values[name])
    if not values["thread"]:
        sqlite_database.Checkpointer.request = _no_request  # type: ignore[method-assign]
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(sqlite_database, name, value)
        sqlite_database.Checkpointer.request = request  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(__doc__, argv)
    quiet_logs()
    conversations, turns = (200, 5) if args.quick else (1000, 15)
    rounds = 1 if args.quick else 2
    ours = {name: getattr(sqlite_database, name) for name in KNOBS} | {"thread": True}
    no_thread = ours | {"WAL_SAFETY_PAGES": ours["WAL_AUTOCHECKPOINT_PAGES"], "thread": False}
    variants = {
        "SQLite defaults": SQLITE_DEFAULTS,
        "store cache + 10k-page checkpoints, no thread": no_thread,
        "store settings (checkpoint thread)": ours,
    }
    report = Report(
        "pragmas",
        "Store settings vs SQLite defaults: store.save replay of a simulation's rows",
        args.quick,
        columns=[
            "settings",
            "cache KiB",
            "writer checkpoints at",
            "checkpoint thread",
            "seconds (median)",
            "saves/s",
        ],
    )
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory(prefix="turnsim-bench-") as tmp, progress() as bar:
        source = os.path.join(tmp, "source.db")

        async def run_sim() -> None:
            store = await SQLiteTurnStore.open(source)
            try:
                with step(bar, "simulation (the rows)", conversations * turns) as advance:
                    await simulate(store, conversations, turns, on_turn=advance)
            finally:
                await store.close()

        anyio.run(run_sim, backend="asyncio")
        rows = read_snapshot_rows(source)
        tasks = {
            name: bar.add_task(f"replay, {name}", total=len(rows) * rounds) for name in variants
        }
        for r in range(rounds):
            for name, values in variants.items():
                path = os.path.join(tmp, f"replay-{r}-{list(variants).index(name)}.db")

                async def run(path: str = path, name: str = name) -> float:
                    store = await SQLiteTurnStore.open(path)
                    try:
                        return await replay(store, rows, lambda k: bar.advance(tasks[name], k))
                    finally:
                        await store.close()

                with settings(values):
                    seconds[name].append(anyio.run(run, backend="asyncio"))
                os.remove(path)

    n = len(rows)
    median = {name: statistics.median(s) for name, s in seconds.items()}
    for name, values in variants.items():
        report.row(
            name,
            values["CACHE_KIB"],
            values["WAL_SAFETY_PAGES"],
            "yes" if values["thread"] else "no",
            median[name],
            n / median[name],
        )
    report.title += f" ({n:,} saves, {conversations:,} conversations)"
    base = median["SQLite defaults"]
    report.ratio(
        "store.save throughput: store settings / SQLite defaults",
        base / median["store settings (checkpoint thread)"],
    )
    report.ratio(
        "  of which cache + fewer checkpoints (no thread) / SQLite defaults",
        base / median["store cache + 10k-page checkpoints, no thread"],
    )
    report.details = {"saves": n, "rounds": rounds, "seconds": seconds, "settings": variants}
    report.finish()
    return report


if __name__ == "__main__":
    main()
