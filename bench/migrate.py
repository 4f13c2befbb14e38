"""Migration: ``turnsim db migrate`` on a 1,000,000-row old database vs one raw UPDATE.

The old database is a ``turns.db``-style store from :func:`sim.ops.samples.make_old_turns_db`
(old schema: no runtime/inference columns, snapshots keyed on their timestamp, runtime
and inference id only inside the metadata JSON, in every alias the old writers used),
sized to about 1,000,000 rows (``turns`` + ``turn_snapshots``).

* measured: ``turnsim db migrate FILE --no-backup`` as a subprocess (the command an
  operator runs; Python start-up included), on a fresh copy;
* baseline: on another copy of the same data, the two columns added (not timed), then one
  raw backfill ``UPDATE`` per table taking the canonical keys with ``json_extract``, in
  one transaction: the least any backfill can do.

For orientation, the same copy then gets the schema's eight indexes (``INDEXES``; the old
snapshot table has no ``snapshot_id``, so its rowid, which every index carries anyway,
stands in): the part of any migration to this schema that the baseline leaves out.

Also shown: the backup the command takes by default (SQLite's backup API, timed alone),
the ``VACUUM`` that ``--vacuum`` adds (on the migrated copy: it returns the rebuilt
table's old pages to the disk), and where the migration's time goes (each statement of
``persisters.migration.migrate`` timed in-process on a third copy).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from typing import Any

from figures import Report, parse_args, progress, step

from persisters.migration import migrate
from persisters.schema import INDEXES
from sim.ops.files import compact_file, mib
from sim.ops.samples import make_old_turns_db

GOAL = "<= 1.5"
TARGET_ROWS = 1_000_000
ROWS_PER_CONVERSATION = 54.1  # what make_old_turns_db writes per conversation at turns=20

RAW_BACKFILL = (
    (
        "turn_snapshots",
        "UPDATE turn_snapshots SET "
        "runtime_key = coalesce(json_extract(payload, '$.metadata.\"geppetto.runtime@v1\"'), ''), "
        "inference_id = coalesce("
        "json_extract(payload, '$.metadata.\"geppetto.inference_id@v1\"'), '') "
        "WHERE json_valid(payload)",
    ),
    (
        "turns",
        "UPDATE turns SET "
        "runtime_key = coalesce("
        "json_extract(turn_metadata_json, '$.\"geppetto.runtime@v1\"'), ''), "
        "inference_id = coalesce("
        "json_extract(turn_metadata_json, '$.\"geppetto.inference_id@v1\"'), '') "
        "WHERE json_valid(turn_metadata_json)",
    ),
)


def count(path: str) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("turns", "turn_snapshots")
        }
    finally:
        conn.close()


def raw_backfill(path: str) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for table, _ in RAW_BACKFILL:
            for column in ("runtime_key", "inference_id"):
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT NOT NULL DEFAULT ''")
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        for _, sql in RAW_BACKFILL:
            conn.execute(sql)
        conn.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        conn.close()


def raw_indexes(path: str) -> float:
    """Seconds to build the schema's indexes on a raw-backfilled copy, in one transaction."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        for name, definition in INDEXES.items():
            columns = definition.replace(", snapshot_id DESC", "").replace(", snapshot_id", "")
            conn.execute(f"CREATE INDEX {name} ON {columns}")
        conn.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        conn.close()


def cli_migrate(path: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "sim", "db", "migrate", path, "--no-backup", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"turnsim db migrate failed ({done.returncode}): {done.stderr.strip()}")
    return seconds, json.loads(done.stdout)


def startup() -> float:
    """Seconds for ``turnsim --version``: the interpreter and CLI start-up in the figure."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sim", "--version"], capture_output=True, check=True)
    return time.perf_counter() - started


def backup_copy(path: str, dest: str) -> float:
    """What the default ``turnsim db migrate`` (with backup) adds: SQLite's backup API."""
    source = sqlite3.connect(path)
    target = sqlite3.connect(dest)
    try:
        started = time.perf_counter()
        source.backup(target)
        return time.perf_counter() - started
    finally:
        target.close()
        source.close()


class _TimedConnection(sqlite3.Connection):
    """Times every ``execute`` (what :func:`persisters.migration.migrate` calls)."""

    spent: defaultdict[str, float]

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        started = time.perf_counter()
        try:
            return super().execute(sql, *args)
        finally:
            self.spent[_kind(sql)] += time.perf_counter() - started


def _kind(sql: str) -> str:
    words = sql.split()
    head = " ".join(words[:2]).upper()
    if head.startswith("INSERT INTO"):
        return "rebuild: copy rows (INSERT ... SELECT)"
    if head.startswith("DROP TABLE"):
        return "rebuild: drop the old table"
    if head.startswith("UPDATE"):
        return "backfill UPDATE (full projection)"
    if head.startswith("CREATE INDEX"):
        return "create indexes"
    if head.startswith("SELECT") and ("count(" in sql or "sum(" in sql):
        return "report counts (unknown / malformed)"
    if head in ("COMMIT", "BEGIN IMMEDIATE"):
        return "begin / commit"
    return "other DDL and pragmas"


def breakdown(path: str) -> dict[str, float]:
    conn = sqlite3.connect(path, isolation_level=None, factory=_TimedConnection)
    conn.spent = defaultdict(float)  # type: ignore[attr-defined]
    try:
        migrate(conn)
        return dict(conn.spent)  # type: ignore[attr-defined]
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(__doc__, argv)
    conversations = 400 if args.quick else round(TARGET_ROWS / ROWS_PER_CONVERSATION)
    report = Report(
        "migrate", "Migration of an old turns.db", args.quick, columns=["step", "seconds"]
    )
    with tempfile.TemporaryDirectory(prefix="turnsim-bench-") as tmp, progress() as bar:
        old = os.path.join(tmp, "old.db")
        with step(bar, f"old database ({conversations:,} conversations)"):
            make_old_turns_db(old, conversations=conversations, turns=20)
        rows = count(old)
        size_mb = os.path.getsize(old) / 1e6
        copies = {name: os.path.join(tmp, f"{name}.db") for name in ("cli", "raw", "parts")}
        with step(bar, "copies of the old database", len(copies)) as advance:
            for dest in copies.values():
                shutil.copyfile(old, dest)
                advance()
        with step(bar, "raw backfill UPDATE (baseline)"):
            raw_s = raw_backfill(copies["raw"])
        with step(bar, "the schema's indexes on that copy (orientation)"):
            raw_index_s = raw_indexes(copies["raw"])
        with step(bar, "turnsim db migrate --no-backup"):
            cli_s, cli_report = cli_migrate(copies["cli"])
        with step(bar, "then VACUUM (migrate --vacuum, in-process)"):
            started = time.perf_counter()
            compaction = compact_file(copies["cli"])
            vacuum_s = time.perf_counter() - started
        start_s = startup()
        with step(bar, "backup copy (default migrate adds it)"):
            backup_s = backup_copy(old, os.path.join(tmp, "backup.db"))
        with step(bar, "where the migration's time goes"):
            parts = breakdown(copies["parts"])

    total_rows = sum(rows.values())
    report.title = (
        f"Migration of an old turns.db: {total_rows:,} rows "
        f"({rows['turn_snapshots']:,} snapshots, {rows['turns']:,} turns), {size_mb:.0f} MB"
    )
    report.row("turnsim db migrate --no-backup (subprocess)", cli_s)
    report.row("  of which: turnsim --version (process start-up alone)", start_s)
    report.row("raw backfill UPDATE, one per table (baseline)", raw_s)
    report.row("  then the schema's 8 indexes on that copy (orientation)", raw_index_s)
    report.row("backup copy, SQLite backup API (default migrate adds it)", backup_s)
    report.row(
        f"VACUUM after the migration (--vacuum): {mib(compaction.before.database_bytes)} -> "
        f"{mib(compaction.after.database_bytes)}",
        vacuum_s,
    )
    for kind, seconds in sorted(parts.items(), key=lambda kv: -kv[1]):
        report.row(f"  in-process migrate(): {kind}", seconds)
    report.row("  in-process migrate(): total", sum(parts.values()))
    report.ratio("turnsim db migrate / raw backfill UPDATE", cli_s / raw_s, GOAL)
    report.ratio(
        "turnsim db migrate with its default backup / raw backfill UPDATE",
        (cli_s + backup_s) / raw_s,
        note="backup timed separately (SQLite backup API) and added",
    )
    report.ratio(
        "turnsim db migrate / (raw backfill UPDATE + the schema's indexes)",
        cli_s / (raw_s + raw_index_s),
        note="what the migration costs beyond the least any migration to this schema "
        "must do (the goal's baseline builds no index)",
    )
    report.details = {
        "rows": rows,
        "size_mb": size_mb,
        "conversations": conversations,
        "cli_s": cli_s,
        "raw_s": raw_s,
        "raw_index_s": raw_index_s,
        "backup_s": backup_s,
        "vacuum_s": vacuum_s,
        "vacuum": compaction.to_json(),
        "startup_s": start_s,
        "breakdown_s": parts,
        "cli_report": {k: cli_report.get(k) for k in ("backfilled", "unknown", "malformed")},
    }
    report.finish()
    return report


if __name__ == "__main__":
    main()
