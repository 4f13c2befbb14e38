"""Several writers on one database file: no "database is locked" reaches the user, and
nothing is lost.

Two real `turnsim run --db FILE` processes start together on a fresh file (both migrate
it, then both write turns and pointers for a while); separately, several stores in one
process, each with its own connection, save concurrently. SQLite's busy timeout and the
store's retry absorb the contention; every turn of every writer is stored whole.
"""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from persisters.model import TurnQuery, TurnSaveOptions
from persisters.sqlite_store import SQLiteTurnStore
from sim.ops.doctor import doctor

TURNSIM = [sys.executable, "-m", "sim"]


def scenario(name: str, convs: int, turns: int) -> str:
    profiles = ["inventory", "planner"]
    lines = [
        f"name: {name}",
        "profiles:",
        "  inventory: {runtime_key: inventory@v1, latency_ms: 50, jitter_ms: 20}",
        "  planner: {runtime_key: planner@v1, latency_ms: 70, tool_rounds: 1, tool_latency_ms: 20}",
        "conversations:",
        *(f"  c{c}: {{profile: {profiles[c % 2]}}}" for c in range(convs)),
        "steps:",
    ]
    for k in range(turns):
        for c in range(convs):
            lines.append(f"  - send: {{conv: c{c}, turn: c{c}t{k}, prompt: p, wait: false}}")
            lines.append(
                f"  - switch_profile: {{conv: c{c}, profile: {profiles[(c + k + 1) % 2]}, "
                "at: random, within_ms: 100}"
            )
        lines.append("  - wait_idle: all")
    lines += [f"  - expect_turn_count: {{conv: c{c}, count: {turns}}}" for c in range(convs)]
    return "\n".join(lines) + "\n"


def run_together(
    tmp_path: Path, writers: int, convs: int, turns: int, *, hold_s: float = 0.0
) -> Path:
    """Start the writers at once; with ``hold_s`` a third connection first holds the write
    lock that long, so every writer starts by waiting for it and then they all contend."""
    db = tmp_path / "shared.db"
    holder = None
    if hold_s:
        anyio.run(lambda: _create(db))
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("UPDATE conversations SET last_activity_ms = last_activity_ms")
    procs = []
    for w in range(writers):
        path = tmp_path / f"w{w}.yaml"
        path.write_text(scenario(f"writer{w}", convs, turns))
        procs.append(
            subprocess.Popen(
                [*TURNSIM, "run", str(path), "--db", str(db), "--json"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    if holder is not None:
        # Release the lock only once both writers are past their start-up (a loaded machine
        # can take seconds to import): released earlier, one writer could finish before the
        # other began, and there would be no contention to test.
        wait_until_open(procs, db, timeout_s=60)
        time.sleep(hold_s)
        holder.execute("COMMIT")
        holder.close()
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert "locked" not in (out + err).lower(), err
        assert "busy" not in err.lower(), err
        assert proc.returncode == 0, err or out
        report = json.loads(out)
        assert report["passed"], report
    return db


def wait_until_open(procs: list[subprocess.Popen[str]], db: Path, timeout_s: float) -> None:
    """Wait until every process holds ``db`` open (read from /proc; where there is no
    /proc, return at once and rely on the hold time alone)."""
    if not Path("/proc/self/fd").is_dir():
        return
    target = str(db.resolve())

    def has_open(pid: int) -> bool:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            return False
        for fd in fds:
            try:
                if os.readlink(fd) == target:
                    return True
            except OSError:
                continue
        return False

    deadline = time.monotonic() + timeout_s
    while not all(has_open(p.pid) for p in procs):
        exited = [p for p in procs if p.poll() is not None]
        assert not exited, f"a writer exited before opening the database: {exited[0].args}"
        assert time.monotonic() < deadline, "the writers did not open the database in time"
        time.sleep(0.02)


async def _create(db: Path) -> None:
    store = await SQLiteTurnStore.open(db)
    await store.close()


def writer_switches(db: Path) -> int:
    """How often consecutive snapshots (by id) come from different writers: > 0 means their
    writes really interleaved, so the test had contention to survive."""
    conn = sqlite3.connect(db)
    try:
        owners = [
            r[0].split(".")[0]
            for r in conn.execute("SELECT conv_id FROM turn_snapshots ORDER BY snapshot_id")
        ]
    finally:
        conn.close()
    return sum(a != b for a, b in itertools.pairwise(owners))


def check_everything_stored(db: Path, writers: int, convs: int, turns: int) -> None:
    assert writer_switches(db) >= 3, "the writers did not overlap; nothing was tested"
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        for w in range(writers):
            for c in range(convs):
                conv = f"writer{w}.c{c}"
                count, empty = conn.execute(
                    "SELECT count(*), sum(runtime_key = '' OR inference_id = '') FROM turns "
                    "WHERE conv_id = ?",
                    (conv,),
                ).fetchone()
                assert (count, empty) == (turns, 0), conv
                pointer = conn.execute(
                    "SELECT current_runtime_key FROM conversations WHERE conv_id = ?", (conv,)
                ).fetchone()
                assert pointer and pointer[0], conv
        orphans = conn.execute(
            "SELECT count(*) FROM turn_snapshots s LEFT JOIN turns t USING "
            "(conv_id, session_id, turn_id) WHERE t.turn_id IS NULL"
        ).fetchone()[0]
        assert orphans == 0
    finally:
        conn.close()
    report = doctor(db)
    assert report.healthy, [c.to_json() for c in report.problems]


def test_two_processes_share_one_database(tmp_path: Path) -> None:
    # Overlap is this test's precondition, not its property: on a loaded machine one writer
    # can still finish before the other gets going. Up to three rounds get the chance to
    # overlap; the round checked is the first that did (or the last, which then fails).
    for round_ in range(3):
        folder = tmp_path / f"round{round_}"
        folder.mkdir()
        db = run_together(folder, writers=2, convs=3, turns=60, hold_s=0.5)
        if writer_switches(db) >= 3:
            break
    check_everything_stored(db, writers=2, convs=3, turns=60)


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(5))
def test_two_processes_migrate_and_share_a_fresh_file(tmp_path: Path, round_: int) -> None:
    db = run_together(tmp_path, writers=2, convs=4, turns=120)
    check_everything_stored(db, writers=2, convs=4, turns=120)


@pytest.mark.slow
def test_four_processes_share_one_database(tmp_path: Path) -> None:
    db = run_together(tmp_path, writers=4, convs=3, turns=60)
    check_everything_stored(db, writers=4, convs=3, turns=60)


def test_many_connections_save_concurrently(tmp_path: Path) -> None:
    """Stores with their own connections commit at once; none sees a lock error."""
    db = tmp_path / "many.db"
    stores, saves = 4, 150

    async def writer(store: SQLiteTurnStore, w: int) -> None:
        for i in range(saves):
            opts = TurnSaveOptions(runtime_key=f"r{w}@v1", inference_id=f"i{w}-{i}")
            await store.save(f"w{w}", "s", f"t{i}", "final", i, "{}", opts)
            if i % 10 == 0:
                await store.conversations.set_current_runtime(f"w{w}", "s", f"r{w}@v1", "p", i)

    async def main() -> None:
        opened = [await SQLiteTurnStore.open(db) for _ in range(stores)]
        try:
            async with anyio.create_task_group() as tg:
                for w, store in enumerate(opened):
                    tg.start_soon(writer, store, w)
            for w in range(stores):
                snaps = await opened[0].list(TurnQuery(conv_id=f"w{w}", limit=10_000))
                assert len(snaps) == saves
                assert {s.runtime_key for s in snaps} == {f"r{w}@v1"}
            rows = await opened[0].list(TurnQuery(limit=10_000))
            owners = [s.conv_id for s in sorted(rows, key=lambda s: s.snapshot_id)]
            assert sum(a != b for a, b in itertools.pairwise(owners)) >= 3
        finally:
            for store in opened:
                await store.close()

    anyio.run(main)
