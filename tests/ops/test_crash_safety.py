"""Crash safety: SIGKILL a real `turnsim run --db FILE` and `turnsim db migrate FILE` at
random points, then check what is on disk.

After a killed run: the file opens (and takes new writes), `turnsim db doctor` finds it
healthy, every stored turn is complete (a turn row with its runtime and inference id and
at least one snapshot, every snapshot whole and agreeing with its row, no half-written
batch), and the log up to the kill agrees with the store: every save the log reports is
stored as reported, and the only stored saves the log does not mention are the tail the
process committed but had no time to log.

After a killed migration: re-running `turnsim db migrate` completes, and the database
equals an uninterrupted migration of the same file, row for row.

The kill points come from a seeded random stream (the test is repeatable) and are aimed
at the interesting window: a number of log lines already written, or the migration's
journal or backup on disk. The default run kills a few times; ``-m slow`` many times.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from persisters.model import PHASES, TurnSaveOptions, extract_inference_id, extract_runtime_key
from persisters.schema import OLD_TIMELINE_SCHEMA, OLD_TURNS_SCHEMA, SCHEMA_VERSION
from persisters.sqlite_store import SQLiteTurnStore
from sim.ops.doctor import doctor

TURNSIM = [sys.executable, "-m", "sim"]
SAVED = ("snapshot.saved", "turn.persisted")


CONVERSATIONS = 4


def long_scenario(name: str, convs: int = CONVERSATIONS, turns: int = 80) -> str:
    """Many turns on several conversations, switches at random times, tool rounds."""
    profiles = ["inventory", "planner", "support"]
    lines = [
        f"name: {name}",
        "seed: 5",
        "profiles:",
        "  inventory: {runtime_key: inventory@v1, latency_ms: 100, jitter_ms: 30}",
        "  planner: {runtime_key: planner@v1, latency_ms: 150, jitter_ms: 30, tool_rounds: 2,"
        " tool_latency_ms: 40}",
        "  support: {runtime_key: support@v2, latency_ms: 80}",
        "conversations:",
        *(f"  c{c}: {{session: s{c}, profile: {profiles[c % 3]}}}" for c in range(convs)),
        "steps:",
    ]
    for k in range(turns):
        for c in range(convs):
            lines.append(
                f'  - send: {{conv: c{c}, turn: c{c}t{k}, prompt: "turn {k}", wait: false}}'
            )
            lines.append(
                f"  - switch_profile: {{conv: c{c}, profile: {profiles[(c + k + 1) % 3]}, "
                "at: random, within_ms: 300}"
            )
        lines.append("  - wait_idle: all")
    lines += [f"  - expect_turn_count: {{conv: c{c}, count: {turns}}}" for c in range(convs)]
    return "\n".join(lines) + "\n"


def wait_then_kill(proc: subprocess.Popen[Any], ready: Any, timeout: float = 60) -> bool:
    """Poll until ``ready()`` (or the process ends); SIGKILL it. True if it was killed."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and not ready():
        if time.monotonic() > deadline:
            break
        time.sleep(0.002)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return True


def log_lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def complete_events(path: Path) -> list[dict[str, Any]]:
    """The log's complete lines (a line cut by the kill has no newline and is ignored)."""
    raw = path.read_bytes() if path.exists() else b""
    complete = raw[: raw.rfind(b"\n") + 1]
    return [json.loads(line) for line in complete.decode().splitlines()]


# -- checks on a database left by a killed run ------------------------------------------


def check_turns_complete(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        turns = conn.execute(
            "SELECT conv_id, session_id, turn_id, runtime_key, inference_id FROM turns"
        ).fetchall()
        snaps = conn.execute(
            "SELECT snapshot_id, conv_id, session_id, turn_id, phase, runtime_key, "
            "inference_id, payload FROM turn_snapshots ORDER BY snapshot_id"
        ).fetchall()
    finally:
        conn.close()
    by_turn: dict[tuple[str, str, str], list[tuple[Any, ...]]] = {}
    for s in snaps:
        by_turn.setdefault((s[1], s[2], s[3]), []).append(s)
    assert [s[0] for s in snaps] == list(range(1, len(snaps) + 1)), "a hole: half a batch"
    for conv, session, turn, runtime, inference in turns:
        assert runtime and inference, (conv, turn, "a turn row without its runtime")
        mine = by_turn.pop((conv, session, turn), [])
        assert mine, (conv, turn, "a turn row without any snapshot")
        for _, _, _, _, phase, s_runtime, s_inference, payload in mine:
            assert phase in PHASES
            doc = json.loads(payload)  # every payload is whole
            assert doc["id"] == turn
            assert (s_runtime, s_inference) == (runtime, inference)
            assert extract_runtime_key(doc["metadata"]) == runtime
            assert extract_inference_id(doc["metadata"]) == inference
    assert not by_turn, f"snapshots without a turn row: {sorted(by_turn)[:3]}"
    return {"turns": len(turns), "snapshots": len(snaps)}


def check_log_agrees(db: Path, log: Path, conversations: int) -> dict[str, int]:
    events = complete_events(log)
    conn = sqlite3.connect(db)
    try:
        rows = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT snapshot_id, conv_id, session_id, turn_id, phase, runtime_key, "
                "inference_id, created_at_ms FROM turn_snapshots"
            )
        }
    finally:
        conn.close()
    logged = set()
    for e in events:
        if e["event"] not in SAVED:
            continue
        logged.add(e["snapshot_id"])
        expected = (
            e["conv_id"],
            e["session_id"],
            e["turn_id"],
            e["phase"],
            e["runtime_key"],
            e["inference_id"],
            e["created_at_ms"],
        )
        assert rows.get(e["snapshot_id"]) == expected, (e, rows.get(e["snapshot_id"]))
    unlogged = sorted(set(rows) - logged)
    # Only the tail: the last commit's saves, which the process had no time to log. Each
    # conversation has at most one save in flight, so that is at most one row per
    # conversation, among the newest rows (the saves of one commit are logged in the
    # seed's order, so a later id may be logged before an earlier one).
    assert len(unlogged) <= conversations, unlogged
    assert not unlogged or unlogged[0] > max(rows) - conversations, (unlogged, max(rows))
    return {"logged": len(logged), "unlogged_tail": len(unlogged)}


def check_reopens_and_writes(db: Path) -> None:
    async def main() -> None:
        store = await SQLiteTurnStore.open(db)
        try:
            opts = TurnSaveOptions(runtime_key="after@v1", inference_id="after")
            await store.save("after-kill", "s", "t", "final", 1, "{}", opts)
            assert [t.turn_id for t in await store.list_turns("after-kill")] == ["t"]
        finally:
            await store.close()

    anyio.run(main)


def kill_runs(tmp_path: Path, kills: int, seed: int) -> dict[str, int]:
    rng = random.Random(f"{seed}/kill-run")
    scenario = tmp_path / "long.yaml"
    scenario.write_text(long_scenario("long"))
    # one uninterrupted run: how many log lines a whole run writes
    full_log = tmp_path / "full.jsonl"
    done = subprocess.run(
        [
            *TURNSIM,
            "run",
            str(scenario),
            "--db",
            str(tmp_path / "full.db"),
            "--log-file",
            str(full_log),
        ],
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    total = log_lines(full_log)
    figures = {"kills": 0, "finished_first": 0, "turns": 0, "snapshots": 0, "unlogged_tail": 0}
    for i in range(kills):
        db, log = tmp_path / f"k{i}.db", tmp_path / f"k{i}.jsonl"
        target = rng.randrange(1, total)
        proc = subprocess.Popen(
            [*TURNSIM, "run", str(scenario), "--db", str(db), "--log-file", str(log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        killed = wait_then_kill(proc, lambda log=log, target=target: log_lines(log) >= target)
        figures["kills" if killed else "finished_first"] += 1
        if not db.exists():
            continue  # killed before it created the file: nothing to check
        counts = check_turns_complete(db)
        agreement = check_log_agrees(db, log, conversations=CONVERSATIONS)
        report = doctor(db)
        assert report.healthy, [c.to_json() for c in report.problems]
        check_reopens_and_writes(db)
        figures["turns"] += counts["turns"]
        figures["snapshots"] += counts["snapshots"]
        figures["unlogged_tail"] += agreement["unlogged_tail"]
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    return figures


def test_killed_runs_leave_a_consistent_database(tmp_path: Path) -> None:
    figures = kill_runs(tmp_path, kills=3, seed=1)
    print("kill-run figures:", figures)
    assert figures["kills"] >= 2, figures  # the kill points land while the run writes
    assert figures["turns"] > 0


@pytest.mark.slow
def test_killed_runs_leave_a_consistent_database_many_times(tmp_path: Path) -> None:
    figures = kill_runs(tmp_path, kills=60, seed=2)
    assert figures["kills"] >= 50, figures
    print("kill-run figures:", figures)


# -- killed migrations ------------------------------------------------------------------


def make_old_database(path: Path, convs: int, turns: int, seed: int = 1) -> None:
    """A pre-cutover database: old tables, runtimes only in metadata (in every alias)."""
    rng = random.Random(f"{seed}/old-db")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(OLD_TURNS_SCHEMA + OLD_TIMELINE_SCHEMA)
    conn.execute("BEGIN")
    t = 0
    for c in range(convs):
        conv, session = f"conv-{c}", f"sess-{c}"
        conn.execute(
            "INSERT INTO conversations VALUES (?, ?, ?, ?, ?)", (conv, session, "planner@v1", 0, 0)
        )
        for k in range(turns):
            turn, runtime = f"turn-{c}-{k}", rng.choice(["inventory@v1", "planner@v1"])
            meta = rng.choice(
                [
                    {"geppetto.runtime@v1": runtime, "geppetto.inference_id@v1": f"i-{c}-{k}"},
                    {"runtime": {"key": runtime}, "inference_id": k},
                    {"runtime_key": runtime},
                    {},
                ]
            )
            t += 10
            conn.execute(
                "INSERT INTO turns VALUES (?, ?, ?, ?, ?, ?, ?)",
                (conv, session, turn, t, json.dumps(meta), "{}", t),
            )
            for phase in ("pre_inference", "post_inference", "final"):
                t += 1
                payload = {"id": turn, "metadata": meta, "blocks": [{"kind": "user", "text": "x"}]}
                conn.execute(
                    "INSERT INTO turn_snapshots VALUES (?, ?, ?, ?, ?, ?)",
                    (conv, session, turn, phase, t, json.dumps(payload)),
                )
    conn.execute("COMMIT")
    conn.close()


def dump(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        return [f"user_version {version}", *conn.iterdump()]
    finally:
        conn.close()


def migrate_cli(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TURNSIM, "db", "migrate", str(path)], capture_output=True, text=True, timeout=300
    )


def busy(db: Path) -> bool:
    """A migration of ``db`` is under way: its backup or its rollback journal is on disk."""
    return Path(f"{db}-journal").exists() or any(db.parent.glob(f"{db.name}.bak-*"))


def timed_migration(db: Path) -> float:
    """Migrate with the CLI; seconds from the first sign of work to the process's end."""
    proc = subprocess.Popen(
        [*TURNSIM, "db", "migrate", str(db)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    started = None
    while proc.poll() is None:
        if started is None and busy(db):
            started = time.monotonic()
        time.sleep(0.002)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    return time.monotonic() - (started or time.monotonic())


@pytest.fixture(scope="module")
def old_database(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, list[str], float]]:
    """An old database, the dump of its uninterrupted migration, and how long that took."""
    base = tmp_path_factory.mktemp("old")
    original = base / "old.db"
    make_old_database(original, convs=120, turns=40)
    reference = base / "reference.db"
    shutil.copy(original, reference)
    window = timed_migration(reference)
    yield original, dump(reference), window


def state_after_kill(db: Path) -> str:
    """Where the kill landed, from what it left on disk (looked at before anything opens
    the file for writing, which would roll a hot journal back)."""
    if Path(f"{db}-journal").exists():
        return "during the migration"
    if any(db.parent.glob(f"{db.name}.bak-v0*.partial")):
        return "during the backup"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()
    return "after the commit" if version == SCHEMA_VERSION else "before it began"


HOT_JOURNAL_REFUSED = "attempt to write a readonly database"

#: Dirties the database inside a transaction, spilling pages to the file, then dies: the
#: hot rollback journal an interrupted migration leaves behind, made deterministic.
DIE_MID_TRANSACTION = """
import os, signal, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA cache_size = 5")
conn.execute("BEGIN IMMEDIATE")
conn.execute("ALTER TABLE turns ADD COLUMN runtime_key TEXT NOT NULL DEFAULT ''")
conn.execute("UPDATE turn_snapshots SET payload = payload || ' ' WHERE rowid <= 3000")
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_migrate_reruns_over_a_hot_journal(
    tmp_path: Path, old_database: tuple[Path, list[str], float]
) -> None:
    original, reference, _ = old_database
    db = tmp_path / "hot.db"
    shutil.copy(original, db)
    died = subprocess.run([sys.executable, "-c", DIE_MID_TRANSACTION, str(db)], timeout=60)
    assert died.returncode == -signal.SIGKILL
    assert Path(f"{db}-journal").exists()  # the interrupted transaction's hot journal
    again = migrate_cli(db)
    assert again.returncode == 0, again.stderr
    assert dump(db) == reference


def kill_migrations(
    workdir: Path, original: Path, reference: list[str], window: float, kills: int, seed: int
) -> dict[str, int]:
    """Kill ``kills`` migrations, each at a random point of the ``window`` (seconds) that an
    uninterrupted one spends working; re-run each and compare with ``reference``."""
    rng = random.Random(f"{seed}/kill-migrate")
    outcomes: dict[str, int] = {}
    for i in range(kills):
        db = workdir / f"m{i}.db"
        shutil.copy(original, db)
        delay = rng.uniform(0, 0.9) * window
        proc = subprocess.Popen(
            [*TURNSIM, "db", "migrate", str(db)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started: list[float] = []

        def ready(db: Path = db, delay: float = delay, started: list[float] = started) -> bool:
            if not started and busy(db):
                started.append(time.monotonic())
            return bool(started) and time.monotonic() - started[0] >= delay

        killed = wait_then_kill(proc, ready)
        state = state_after_kill(db) if killed else "finished first"
        outcomes[state] = outcomes.get(state, 0) + 1
        again = migrate_cli(db)
        if again.returncode != 0 and HOT_JOURNAL_REFUSED in again.stderr:
            # Known bug (see test_migrate_reruns_over_a_hot_journal): recover the way an
            # operator would, by opening the file read-write once; then re-run.
            outcomes["re-run refused: hot journal"] = (
                outcomes.get("re-run refused: hot journal", 0) + 1
            )
            sqlite3.connect(db).execute("PRAGMA quick_check").fetchall()
            again = migrate_cli(db)
        assert again.returncode == 0, again.stderr
        assert dump(db) == reference, f"kill {i} ({state}): differs from a clean migration"
        assert doctor(db).healthy
        if any(db.parent.glob(f"{db.name}.bak-*.partial")):
            outcomes["partial backup left behind"] = (
                outcomes.get("partial backup left behind", 0) + 1
            )
        for leftover in db.parent.glob(f"{db.name}*"):
            leftover.unlink()
    return outcomes


def test_a_killed_migration_completes_when_run_again(
    tmp_path: Path, old_database: tuple[Path, list[str], float]
) -> None:
    original, reference, window = old_database
    outcomes = kill_migrations(tmp_path, original, reference, window, kills=2, seed=1)
    print("kill-migrate outcomes:", outcomes)
    assert outcomes.get("finished first", 0) < 2, outcomes  # something was interrupted


@pytest.mark.slow
def test_a_killed_migration_completes_when_run_again_many_times(tmp_path: Path) -> None:
    original = tmp_path / "big-old.db"
    make_old_database(original, convs=300, turns=60, seed=2)
    reference_db = tmp_path / "reference.db"
    shutil.copy(original, reference_db)
    window = timed_migration(reference_db)
    outcomes = kill_migrations(tmp_path, original, dump(reference_db), window, kills=40, seed=2)
    assert outcomes.get("during the migration", 0) >= 1, outcomes
    print("kill-migrate outcomes:", outcomes)
