"""The log alone rebuilds what the store holds: replay the events of a run and compare,
row by row and column by column, with the SQLite database the run kept (``--db``).

Payloads and metadata JSON are not in the log; every other column is compared. The
variants make the store misbehave (rewritten runtimes, merged turns): the log must still
tell exactly what it did.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from persisters.errors import TRIGGER_REFUSAL
from persisters.write_once import drop_triggers
from sim.cli.main import cli
from sim.logs.read import read_events
from sim.logs.replay import StoreImage, replay_store
from sim.logs.setup import configure_quiet

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"
VARIANTS = ["", "late-snapshot-runtime+upsert-overwrite", "default-turn-id"]


def database_image(path: Path) -> StoreImage:
    """The same shape as :func:`replay_store`, read from the database."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        image = StoreImage()
        for r in conn.execute(
            "SELECT conv_id, session_id, current_runtime_key, profile_slug, created_at_ms, "
            "last_activity_ms FROM conversations"
        ):
            row = dict(r)
            image.conversations[row.pop("conv_id")] = row
        for r in conn.execute(
            "SELECT conv_id, session_id, turn_id, turn_created_at_ms, updated_at_ms, "
            "runtime_key, inference_id FROM turns"
        ):
            row = dict(r)
            key = (row.pop("conv_id"), row.pop("session_id"), row.pop("turn_id"))
            image.turns[key] = row
        for r in conn.execute(
            "SELECT snapshot_id, conv_id, session_id, turn_id, phase, created_at_ms, "
            "runtime_key, inference_id FROM turn_snapshots"
        ):
            row = dict(r)
            image.snapshots[row.pop("snapshot_id")] = row
        return image
    finally:
        conn.close()


def differences(log: StoreImage, db: StoreImage) -> list[str]:
    out = []
    for table in ("conversations", "turns", "snapshots"):
        a: dict[Any, Any] = getattr(log, table)
        b: dict[Any, Any] = getattr(db, table)
        for key in sorted(set(a) | set(b), key=str):
            if a.get(key) != b.get(key):
                out.append(f"{table} {key}: log {a.get(key)} != database {b.get(key)}")
    return out


@pytest.fixture(scope="module", params=VARIANTS, ids=lambda v: v or "default")
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    directory = tmp_path_factory.mktemp("replay")
    db, log = directory / "run.db", directory / "run.jsonl"
    args = ["run", str(SCENARIOS), "--db", str(db), "--log-file", str(log)]
    if request.param:
        args += ["--variant", request.param]
    result = CliRunner().invoke(cli, args)
    configure_quiet()  # `turnsim run --log-file` leaves structlog on its (closed) file
    assert result.exit_code == (1 if request.param else 0), result.output
    return request.param, db, read_events(str(log))


def test_the_log_rebuilds_the_database(run: Any) -> None:
    variant, db, events = run
    stored = database_image(db)
    assert len(stored.snapshots) > 50 and len(stored.turns) > 10 and stored.conversations
    assert differences(replay_store(events), stored) == []
    if variant:  # the variants really made the store disagree with per-turn truth (or tried
        # to, and the file's write-once triggers refused it)
        started = {
            e["inference_id"]: e["runtime_key"] for e in events if e["event"] == "inference.started"
        }
        rows = stored.turns.values()
        refused = any(TRIGGER_REFUSAL in str(e.get("error", "")) for e in events)
        assert (
            any(started.get(r["inference_id"]) not in (None, r["runtime_key"]) for r in rows)
            or (len(stored.turns) < len(started))
            or refused
        )


def test_a_changed_database_no_longer_matches(run: Any, tmp_path: Path) -> None:
    _, db, events = run
    copy = tmp_path / "copy.db"
    shutil.copy(db, copy)
    conn = sqlite3.connect(copy)
    drop_triggers(conn)  # hand damage: past the file's write-once triggers
    with conn:
        turn = conn.execute("SELECT conv_id, turn_id FROM turns ORDER BY rowid LIMIT 1").fetchone()
        conn.execute(
            "UPDATE turns SET runtime_key = 'tampered@v9' WHERE conv_id = ? AND turn_id = ?", turn
        )
        gone = conn.execute("SELECT max(snapshot_id) FROM turn_snapshots").fetchone()[0]
        conn.execute("DELETE FROM turn_snapshots WHERE snapshot_id = ?", (gone,))
        conn.execute("UPDATE conversations SET last_activity_ms = last_activity_ms + 1")
    conn.close()
    found = differences(replay_store(events), database_image(copy))
    conversations = len(database_image(copy).conversations)
    assert len(found) == 2 + conversations
    assert any("tampered@v9" in d and turn[1] in d for d in found)
    assert any(d.startswith(f"snapshots {gone}:") and "database None" in d for d in found)
