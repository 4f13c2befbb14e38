"""Against peers: the same finished turns saved through turnsim and through two peers.

Same process, same machine, same rows (:func:`workload.final_turns`), each system on its
own fresh database file. Every save is awaited until committed:

* turnsim: ``SQLiteTurnStore.save`` (phase ``final``), one task per conversation, all
  conversations at once; group commit batches them. WAL, synchronous=NORMAL (its
  default); a second run at synchronous=FULL for equal fsync settings.
* LangGraph (``langgraph-checkpoint-sqlite``): ``SqliteSaver.put`` (sync, one call after
  another) and ``AsyncSqliteSaver.aput``; one checkpoint per turn carrying the turn.
* OpenAI Agents SDK: ``SQLiteSession.add_items``, one session per conversation, one item
  per turn carrying the turn.

The server stores are measured the same way (``ours_server``: turnsim's PostgreSQL and
MariaDB stores, scratch schema/database, server defaults: every commit flushed), beside
the SQLite peers: the peers have no server store in these packages, so those rows compare
turnsim on a server with the peers on their SQLite files. A server that does not answer
is left out (and said so).

Both peers switch their file to WAL, leave ``synchronous`` at SQLite's default and commit
once per call; the levels are read back from their connections and printed. The async
peers run once with the same concurrency as turnsim and once one call at a time; each
ratio divides by the faster of the two. A raw ``INSERT`` + ``COMMIT`` per turn (sqlite3,
same schema as turnsim) is shown for orientation, and so is turnsim's own SQL without
turnsim around it: the store's statements for each turn run straight on ``sqlite3`` in
batches of one commit per round of conversations (what group commit achieves at best):
the ceiling of any turnsim ratio on this schema and this machine.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

import anyio
from figures import Report, err, parse_args, progress
from workload import (
    RAW_INSERT,
    SQLiteTurnStore,
    TurnSaveOptions,
    final_turns,
    fresh_database,
    quiet_logs,
    store_sql,
)

GOAL = ">= 10"
SYNC = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}

Row = tuple[Any, ...]
Advance = Callable[[int], None]


def by_conversation(rows: Sequence[Row]) -> list[list[Row]]:
    out: dict[str, list[Row]] = {}
    for row in rows:
        out.setdefault(row[0], []).append(row)
    return list(out.values())


async def gather(
    groups: list[list[Row]], save: Callable[[Row], Any], advance: Callable[[int], None]
) -> float:
    """Seconds to run ``save`` over every group at once, each group in order."""

    async def one(group: list[Row]) -> None:
        for row in group:
            await save(row)
        advance(len(group))

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for group in groups:
            tg.start_soon(one, group)
    return time.perf_counter() - started


# -- turnsim ------------------------------------------------------------------------------


def ours(path: str, rows: Sequence[Row], advance: Advance, backend: str, synchronous: str) -> dict:
    async def run() -> dict:
        store = await SQLiteTurnStore.open(path)
        try:
            if synchronous != "NORMAL":
                await store.execute(f"PRAGMA synchronous = {synchronous}")
            level = (await store.execute("PRAGMA synchronous"))[0][0]

            async def save(row: Row) -> None:
                conv, session, turn, phase, created, payload, runtime, inference = row
                await store.save(
                    conv,
                    session,
                    turn,
                    phase,
                    created,
                    payload,
                    TurnSaveOptions(runtime, inference),
                )

            seconds = await gather(by_conversation(rows), save, advance)
            return {"seconds": seconds, "synchronous": SYNC[level], "journal": "wal"}
        finally:
            await store.close()

    return anyio.run(run, backend=backend)


def ours_server(path: str, rows: Sequence[Row], advance: Advance, dsn: str) -> dict:
    """turnsim's own loop on a server store (a scratch schema/database, dropped after);
    ``path`` is unused: the rows go to the server. Returns how many it stored."""
    from persisters.stores import StoreSpec

    async def run() -> dict:
        store: Any = await StoreSpec.parse(dsn).open()
        try:

            async def save(row: Row) -> None:
                conv, session, turn, phase, created, payload, runtime, inference = row
                await store.save(
                    conv,
                    session,
                    turn,
                    phase,
                    created,
                    payload,
                    TurnSaveOptions(runtime, inference),
                )

            seconds = await gather(by_conversation(rows), save, advance)
            stored = (await store.execute("SELECT count(*) FROM turn_snapshots"))[0][0]
            journal = "WAL" if store.kind == "postgresql" else "InnoDB redo log"
            return {"seconds": seconds, "synchronous": "server default", "journal": journal,
                    "stored": int(stored)}  # fmt: skip
        finally:
            await store.close()

    return anyio.run(run)


def server_reachable(dsn: str) -> str | None:
    """Why the server of ``dsn`` cannot be measured (None: it can)."""
    from persisters.stores import StoreSpec

    async def ping() -> None:
        store = await StoreSpec.parse(dsn).open()
        await store.close()

    try:
        anyio.run(ping)
    except Exception as exc:  # any reason: the server rows are left out, and said so
        return f"{type(exc).__name__}: {exc}"
    return None


def raw_commit_per_turn(path: str, rows: Sequence[Row], advance: Advance, synchronous: str) -> dict:
    conn = fresh_database(path)
    try:
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        started = time.perf_counter()
        for row in rows:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(RAW_INSERT, row)
            conn.execute("COMMIT")
        seconds = time.perf_counter() - started
        advance(len(rows))
        level = conn.execute("PRAGMA synchronous").fetchone()[0]
        return {"seconds": seconds, "synchronous": SYNC[level], "journal": "wal"}
    finally:
        conn.close()


def store_sql_floor(path: str, rows: Sequence[Row], advance: Advance) -> dict:
    """The store's own statements per turn, one commit per round of conversations, no
    Python scheduling around them: how fast turnsim could go with zero overhead of its own."""
    groups = by_conversation(rows)
    rounds = [[g[i] for g in groups if i < len(g)] for i in range(max(map(len, groups)))]
    seconds = store_sql(path, rounds)
    advance(len(rows))
    return {"seconds": seconds, "synchronous": "NORMAL", "journal": "wal"}


# -- LangGraph ------------------------------------------------------------------------------


def _checkpoints(rows: Sequence[Row]) -> list[tuple[dict, dict, dict, dict]]:
    """(config, checkpoint, metadata, new_versions) per turn, chained per conversation."""
    from langgraph.checkpoint.base import LATEST_VERSION

    last: dict[str, str | None] = {}
    out = []
    for step_no, (conv, _s, turn, _p, created, payload, runtime, inference) in enumerate(rows):
        checkpoint_id = str(uuid.UUID(hex=turn))
        config = {
            "configurable": {
                "thread_id": conv,
                "checkpoint_ns": "",
                "checkpoint_id": last.get(conv),
            }
        }
        checkpoint = {
            "v": LATEST_VERSION,
            "id": checkpoint_id,
            "ts": datetime.fromtimestamp(created / 1000, UTC).isoformat(),
            "channel_values": {"turn": payload},
            "channel_versions": {"turn": step_no + 1},
            "versions_seen": {},
            "pending_sends": [],
            "updated_channels": ["turn"],
        }
        metadata = {"source": "loop", "step": step_no, "runtime_key": runtime, "run_id": inference}
        out.append((config, checkpoint, metadata, {"turn": step_no + 1}))
        last[conv] = checkpoint_id
    return out


def langgraph_sync(path: str, rows: Sequence[Row], advance: Advance) -> dict:
    from langgraph.checkpoint.sqlite import SqliteSaver

    calls = _checkpoints(rows)
    conn = sqlite3.connect(path, check_same_thread=False)
    try:
        saver = SqliteSaver(conn)
        saver.setup()
        started = time.perf_counter()
        for call in calls:
            saver.put(*call)
        seconds = time.perf_counter() - started
        advance(len(calls))
        level = conn.execute("PRAGMA synchronous").fetchone()[0]
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
        return {"seconds": seconds, "synchronous": SYNC[level], "journal": journal}
    finally:
        conn.close()


def langgraph_async(path: str, rows: Sequence[Row], advance: Advance, concurrent: bool) -> dict:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    calls = {row[2]: call for row, call in zip(rows, _checkpoints(rows), strict=True)}

    async def run() -> dict:
        async with AsyncSqliteSaver.from_conn_string(path) as saver:
            await saver.setup()

            async def save(row: Row) -> None:
                await saver.aput(*calls[row[2]])

            groups = by_conversation(rows) if concurrent else [list(rows)]
            seconds = await gather(groups, save, advance)
            async with saver.conn.execute("PRAGMA synchronous") as cur:
                level = (await cur.fetchone())[0]
            async with saver.conn.execute("PRAGMA journal_mode") as cur:
                journal = (await cur.fetchone())[0]
            return {"seconds": seconds, "synchronous": SYNC[level], "journal": journal}

    return anyio.run(run, backend="asyncio")


# -- OpenAI Agents SDK ------------------------------------------------------------------------


def agents_sdk(path: str, rows: Sequence[Row], advance: Advance, concurrent: bool) -> dict:
    from agents import SQLiteSession

    async def run() -> dict:
        sessions = {conv: SQLiteSession(conv, path) for conv in dict.fromkeys(r[0] for r in rows)}
        try:

            async def save(row: Row) -> None:
                await sessions[row[0]].add_items([{"role": "assistant", "content": row[5]}])

            groups = by_conversation(rows) if concurrent else [list(rows)]
            seconds = await gather(groups, save, advance)
            session = next(iter(sessions.values()))

            def pragmas() -> tuple[int, str]:
                conn = session._get_connection()  # only to read back its settings
                return (
                    conn.execute("PRAGMA synchronous").fetchone()[0],
                    conn.execute("PRAGMA journal_mode").fetchone()[0],
                )

            level, journal = await asyncio.to_thread(pragmas)
            return {"seconds": seconds, "synchronous": SYNC[level], "journal": journal}
        finally:
            for session in sessions.values():
                session.close()

    return anyio.run(run, backend="asyncio")


def count_rows(path: str, table: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


#: key -> (system, call, concurrency: "all" or 1, runner(path, rows, advance))
SYSTEMS: dict[str, tuple[str, str, str, Callable[[str, Sequence[Row], Advance], dict]]] = {
    "ours": (
        "turnsim",
        "SQLiteTurnStore.save",
        "all",
        partial(ours, backend="asyncio", synchronous="NORMAL"),
    ),
    "ours_full": (
        "turnsim",
        "SQLiteTurnStore.save",
        "all",
        partial(ours, backend="asyncio", synchronous="FULL"),
    ),
    "ours_trio": (
        "turnsim (trio)",
        "SQLiteTurnStore.save",
        "all",
        partial(ours, backend="trio", synchronous="NORMAL"),
    ),
    "raw_normal": (
        "raw sqlite3",
        "INSERT + COMMIT",
        "1",
        partial(raw_commit_per_turn, synchronous="NORMAL"),
    ),
    "raw_full": (
        "raw sqlite3",
        "INSERT + COMMIT",
        "1",
        partial(raw_commit_per_turn, synchronous="FULL"),
    ),
    "floor": (
        "turnsim's SQL alone",
        "store statements, 1 commit per round",
        "all",
        store_sql_floor,
    ),
    "ours_pg": (
        "turnsim on PostgreSQL",
        "PostgresTurnStore.save",
        "all",
        partial(ours_server, dsn="postgresql://127.0.0.1:5432/test"),
    ),
    "ours_my": (
        "turnsim on MariaDB",
        "MySQLTurnStore.save",
        "all",
        partial(ours_server, dsn="mysql://root@127.0.0.1:3306/test"),
    ),
    "lg_sync": ("LangGraph", "SqliteSaver.put", "1", langgraph_sync),
    "lg_async": (
        "LangGraph",
        "AsyncSqliteSaver.aput",
        "all",
        partial(langgraph_async, concurrent=True),
    ),
    "lg_async_1": (
        "LangGraph",
        "AsyncSqliteSaver.aput",
        "1",
        partial(langgraph_async, concurrent=False),
    ),
    "sdk": (
        "OpenAI Agents",
        "SQLiteSession.add_items",
        "all",
        partial(agents_sdk, concurrent=True),
    ),
    "sdk_1": (
        "OpenAI Agents",
        "SQLiteSession.add_items",
        "1",
        partial(agents_sdk, concurrent=False),
    ),
}
#: The table each system writes its rows to (checked after every run).
TABLES = {
    "ours": "turn_snapshots",
    "raw": "turn_snapshots",
    "floor": "turn_snapshots",
    "lg": "checkpoints",
    "sdk": "agent_messages",
}


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(__doc__, argv)
    quiet_logs()
    conversations, turns = (50, 10) if args.quick else (200, 30)
    rounds = 1 if args.quick else 3
    rows = final_turns(conversations, turns)
    n = len(rows)
    report = Report(
        "peers",
        f"Against peers: {n:,} turns ({conversations} conversations x {turns}), each save "
        f"awaited until committed; median of {rounds} run(s)",
        args.quick,
        columns=["system", "call", "journal", "synchronous", "concurrency", "seconds", "turns/s"],
    )
    unreachable = {
        key: reason
        for key in ("ours_pg", "ours_my")
        if (reason := server_reachable(SYSTEMS[key][3].keywords["dsn"])) is not None
    }
    systems = {key: v for key, v in SYSTEMS.items() if key not in unreachable}
    for key, reason in unreachable.items():
        err.print(f"[yellow]{SYSTEMS[key][0]} skipped: {reason}[/]")
    runs: dict[str, list[dict]] = {key: [] for key in systems}
    with tempfile.TemporaryDirectory(prefix="turnsim-bench-") as tmp, progress() as bar:
        tasks = {
            key: bar.add_task(f"{key:<10} {call}", total=n * rounds)
            for key, (_, call, _, _) in systems.items()
        }
        # Rounds interleave the systems, so a slow spell of the machine hits them alike.
        for r in range(rounds):
            for key, (_, _, _, runner) in systems.items():
                path = os.path.join(tmp, f"{key}-{r}.db")
                result = runner(path, rows, partial(bar.advance, tasks[key]))
                if "stored" in result:  # a server store counted its own rows
                    stored = result["stored"]
                else:
                    stored = count_rows(path, TABLES[key.split("_")[0]])
                    os.remove(path)
                if stored != n:
                    raise SystemExit(f"{key} stored {stored} rows for {n} turns")
                runs[key].append(result)

    seconds = {
        key: statistics.median(r["seconds"] for r in results) for key, results in runs.items()
    }
    rate = {key: n / s for key, s in seconds.items()}
    for key, (system, call, concurrency, _) in systems.items():
        first = runs[key][0]
        report.row(
            system,
            call,
            first["journal"],
            first["synchronous"],
            conversations if concurrency == "all" else 1,
            seconds[key],
            rate[key],
        )
    lg_async = max(rate["lg_async"], rate["lg_async_1"])
    sdk = max(rate["sdk"], rate["sdk_1"])
    report.ratio("turnsim / LangGraph SqliteSaver.put", rate["ours"] / rate["lg_sync"], GOAL)
    report.ratio("turnsim / LangGraph AsyncSqliteSaver.aput", rate["ours"] / lg_async, GOAL)
    report.ratio("turnsim / Agents SQLiteSession.add_items", rate["ours"] / sdk, GOAL)
    report.ratio(
        "turnsim at FULL / fastest peer call",
        rate["ours_full"] / max(rate["lg_sync"], lg_async, sdk),
        note="turnsim with synchronous=FULL, like the peers, against the fastest peer call",
    )
    report.ratio("turnsim / raw INSERT+COMMIT per turn (NORMAL)", rate["ours"] / rate["raw_normal"])
    report.ratio(
        "turnsim's SQL alone (ceiling) / LangGraph SqliteSaver.put",
        rate["floor"] / rate["lg_sync"],
        note="the store's statements with no turnsim Python around them: no ratio of "
        "turnsim itself can exceed this one",
    )
    report.ratio("turnsim / turnsim's SQL alone", rate["ours"] / rate["floor"])
    fastest_peer = max(rate["lg_sync"], lg_async, sdk)
    for key, label in (("ours_pg", "PostgreSQL"), ("ours_my", "MariaDB")):
        if key in rate:
            report.ratio(
                f"turnsim on {label} / fastest peer call (SQLite)", rate[key] / fastest_peer
            )
            report.ratio(f"turnsim on {label} / turnsim on SQLite", rate[key] / rate["ours"])
    report.details = {
        "servers_skipped": unreachable,
        "turns": n,
        "conversations": conversations,
        "rounds": rounds,
        "runs": runs,
        "median_seconds": seconds,
        "turns_per_s": rate,
    }
    report.finish()
    return report


if __name__ == "__main__":
    main()
