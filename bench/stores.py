"""Stores: the same simulated workload on SQLite, PostgreSQL and MariaDB, each against its
own database's raw bulk insert of the very same rows, measured in the same run.

For each store the simulation of ``bench/persist.py`` (conversations x turns with profile
switches, every other one mid-inference) saves through the pipelines into the store,
group commit on; its stored snapshots per second (wall clock, simulation included) are
divided by the rate at which *that database* takes the same snapshot rows in one bulk
operation into a fresh copy of the same schema (indexes and, on the servers, the
append-only trigger), in one transaction, best of three:

* SQLite: ``executemany`` (WAL, synchronous=NORMAL), as ``persist.py`` measures it;
* PostgreSQL: ``COPY ... FROM STDIN`` (psycopg 3), the server's fastest path in;
* MariaDB: PyMySQL's ``executemany`` (multi-row ``INSERT ... VALUES`` statements).

A second figure per store replays the same rows through ``store.save`` without the
simulation. The servers are the project's (``postgresql://127.0.0.1:5432/test``,
``mysql://root@127.0.0.1:3306/test``; ``--postgres DSN`` / ``--mysql DSN`` to change);
each run works in its own scratch schema/database, dropped after. A server that does not
answer is reported as skipped, not measured.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
from figures import Report, err, progress, step
from workload import (
    SNAPSHOT_COLUMNS,
    SimRun,
    SQLiteTurnStore,
    quiet_logs,
    raw_executemany,
    read_snapshot_rows,
    replay,
    simulate,
)

from persisters.server_sql import scratch_name
from persisters.server_store import ServerTurnStore
from persisters.stores import StoreSpec

POSTGRES = "postgresql://127.0.0.1:5432/test"
MYSQL = "mysql://root@127.0.0.1:3306/test"
COLUMNS = ", ".join(SNAPSHOT_COLUMNS)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run (seconds)")
    parser.add_argument("--postgres", default=POSTGRES, help="PostgreSQL DSN")
    parser.add_argument("--mysql", default=MYSQL, help="MySQL/MariaDB DSN")
    return parser.parse_args(argv)


# -- the raw bulk inserts ------------------------------------------------------------------


def _server_rows(store: ServerTurnStore) -> list[tuple[Any, ...]]:
    async def read() -> list[tuple[Any, ...]]:
        return await store.execute(f"SELECT {COLUMNS} FROM turn_snapshots ORDER BY snapshot_id")

    return anyio.run(read)


def raw_server(spec: StoreSpec, rows: Sequence[tuple[Any, ...]], repeat: int = 3) -> float:
    """Best seconds to bulk-insert ``rows`` into a fresh scratch copy of the schema."""
    dialect, _ = spec.server()
    best = float("inf")
    for _ in range(repeat):
        name = scratch_name()

        async def make(namespace: str = name) -> None:
            store = await ServerTurnStore.open(dialect, namespace)
            await store.close()

        anyio.run(make)
        conn = dialect.connect(name, read_only=False)
        try:
            started = time.perf_counter()
            dialect.begin(conn, read_only=False)
            with conn.cursor() as cur:
                if spec.kind == "postgresql":
                    with cur.copy(f"COPY turn_snapshots ({COLUMNS}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
                else:
                    marks = ", ".join(["%s"] * len(SNAPSHOT_COLUMNS))
                    cur.executemany(
                        f"INSERT INTO turn_snapshots ({COLUMNS}) VALUES ({marks})", list(rows)
                    )
            dialect.commit(conn)
            best = min(best, time.perf_counter() - started)
        finally:
            conn.close()
            dialect.drop_namespace(name)
    return best


# -- one store ------------------------------------------------------------------------------


def measure(
    label: str,
    open_store: Callable[[], Any],
    read_rows: Callable[[Any], list[tuple[Any, ...]]],
    raw: Callable[[list[tuple[Any, ...]]], float],
    conversations: int,
    turns: int,
    bar: Any,
) -> dict[str, Any]:
    """The simulation, its raw bulk insert, and the replay, on one kind of store."""

    async def run_sim() -> tuple[SimRun, list[tuple[Any, ...]]]:
        store = await open_store()
        try:
            with step(bar, f"{label}: simulation", conversations * turns) as advance:
                sim = await simulate(store, conversations, turns, on_turn=advance)
            return sim, await anyio.to_thread.run_sync(read_rows, store)
        finally:
            await store.close()

    sim, rows = anyio.run(run_sim)
    assert len(rows) == sim.snapshots, (len(rows), sim.snapshots)
    with step(bar, f"{label}: raw bulk insert x3"):
        raw_s = raw(rows)

    async def run_replay() -> float:
        store = await open_store()
        try:
            with step(bar, f"{label}: store.save replay", len(rows)) as advance:
                return await replay(store, rows, on_save=advance)
        finally:
            await store.close()

    replay_s = anyio.run(run_replay)
    return {"label": label, "sim": sim, "raw_s": raw_s, "replay_s": replay_s, "rows": len(rows)}


def main(argv: list[str] | None = None) -> Report:
    args = parse(argv)
    quiet_logs()
    conversations, turns = (40, 5) if args.quick else (300, 10)
    report = Report(
        "stores",
        f"Stores, the same simulation ({conversations:,} conversations x {turns} turns)",
        args.quick,
        columns=["store", "snapshots", "seconds", "snapshots/s", "mean batch", "/ its raw bulk"],
    )
    results = []
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="turnsim-bench-") as tmp, progress() as bar:
        count = iter(range(1_000_000))

        def sqlite_open() -> Any:
            return SQLiteTurnStore.open(os.path.join(tmp, f"sim{next(count)}.db"))

        results.append(
            measure(
                "SQLite file",
                sqlite_open,
                lambda store: read_snapshot_rows(store.path),
                lambda rows: raw_executemany(os.path.join(tmp, "raw.db"), rows),
                conversations,
                turns,
                bar,
            )
        )
        for label, dsn in (("PostgreSQL", args.postgres), ("MariaDB", args.mysql)):
            spec = StoreSpec.parse(dsn)
            try:
                anyio.run(_ping, spec)
            except Exception as exc:  # no server here: say so, measure the rest
                skipped[label] = f"{type(exc).__name__}: {exc}"
                err.print(f"[yellow]{label} skipped: {skipped[label]}[/]")
                continue
            results.append(
                measure(
                    label,
                    lambda spec=spec: spec.open(),
                    _server_rows,
                    lambda rows, spec=spec: raw_server(spec, rows),
                    conversations,
                    turns,
                    bar,
                )
            )
    for r in results:
        sim: SimRun = r["sim"]
        raw_rate = r["rows"] / r["raw_s"]
        report.row(
            f"{r['label']}: simulation -> store",
            sim.snapshots,
            sim.wall_s,
            sim.snapshots_per_s,
            sim.mean_batch,
            sim.snapshots_per_s / raw_rate,
        )
        report.row(f"  {r['label']}: raw bulk insert (best of 3)", r["rows"], r["raw_s"],
                   raw_rate, r["rows"], 1.0)  # fmt: skip
        report.row(
            f"  {r['label']}: store.save replay, no simulation",
            r["rows"],
            r["replay_s"],
            r["rows"] / r["replay_s"],
            "",
            (r["rows"] / r["replay_s"]) / raw_rate,
        )
        report.ratio(
            f"{r['label']}: simulation / its raw bulk insert", sim.snapshots_per_s / raw_rate
        )
        report.ratio(
            f"{r['label']}: store.save replay / its raw bulk insert",
            (r["rows"] / r["replay_s"]) / raw_rate,
        )
    base = next((r for r in results if r["label"] == "SQLite file"), None)
    for r in results:
        if base is not None and r is not base:
            report.ratio(
                f"{r['label']} simulation / SQLite simulation (snapshots/s)",
                r["sim"].snapshots_per_s / base["sim"].snapshots_per_s,
            )
    report.details = {
        "runs": [
            {**{k: v for k, v in r.items() if k != "sim"}, **r["sim"].to_json()} for r in results
        ],
        "skipped": skipped,
        "raw": {
            "SQLite file": "executemany, one transaction, WAL + synchronous=NORMAL",
            "PostgreSQL": "COPY FROM STDIN, one transaction (server defaults)",
            "MariaDB": "PyMySQL executemany (multi-row INSERT), one transaction",
        },
    }
    report.finish()
    return report


async def _ping(spec: StoreSpec) -> None:
    store = await spec.open()
    await store.close()


if __name__ == "__main__":
    main()
