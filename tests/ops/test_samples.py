"""The old-database generator: deterministic, old-schema, realistic, and honest about itself."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from persisters.model import extract_inference_id, extract_runtime_key, metadata_of_payload
from persisters.schema import table_columns, user_version
from sim.ops.checks import SWITCH_ENTITY_KINDS
from sim.ops.samples import (
    PROFILES,
    SWITCH_KIND,
    make_old_timeline_db,
    make_old_turns_db,
    make_samples,
)


def _dump(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def _rows(path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("samples")
    turns, timeline = make_samples(directory)
    return directory, turns, timeline


def test_same_seed_same_databases_other_seed_other_databases(tmp_path: Path) -> None:
    a = make_old_turns_db(tmp_path / "a.db", seed=11, conversations=5, turns=4)
    b = make_old_turns_db(tmp_path / "b.db", seed=11, conversations=5, turns=4)
    c = make_old_turns_db(tmp_path / "c.db", seed=12, conversations=5, turns=4)
    assert _dump(tmp_path / "a.db") == _dump(tmp_path / "b.db")
    assert _dump(tmp_path / "a.db") != _dump(tmp_path / "c.db")
    assert a.to_json() | {"path": ""} == b.to_json() | {"path": ""}
    assert c.expected_turns != a.expected_turns
    t1 = make_old_timeline_db(tmp_path / "t1.db", seed=11, conversations=5, turns=4)
    t2 = make_old_timeline_db(tmp_path / "t2.db", seed=11, conversations=5, turns=4)
    assert _dump(tmp_path / "t1.db") == _dump(tmp_path / "t2.db")
    assert t1.pointer_verdicts == t2.pointer_verdicts


def test_files_have_exactly_the_old_schema(samples) -> None:
    directory, _, _ = samples
    conn = sqlite3.connect(directory / "turns.db")
    try:
        assert user_version(conn) == 0
        assert set(table_columns(conn, "turns")) == {
            "conv_id",
            "session_id",
            "turn_id",
            "turn_created_at_ms",
            "turn_metadata_json",
            "turn_data_json",
            "updated_at_ms",
        }
        assert "snapshot_id" not in table_columns(conn, "turn_snapshots")
        assert "runtime_key" not in table_columns(conn, "turn_snapshots")
        assert table_columns(conn, "conversations") == {}
    finally:
        conn.close()
    conn = sqlite3.connect(directory / "timeline3.db")
    try:
        assert user_version(conn) == 0
        assert "runtime_key" in table_columns(conn, "conversations")
        assert "current_runtime_key" not in table_columns(conn, "conversations")
        assert table_columns(conn, "turns") == {}
        assert set(table_columns(conn, "timeline_entities")) >= {"kind", "payload_json"}
    finally:
        conn.close()


def test_default_sample_holds_every_defect_worth_migrating(samples) -> None:
    _, turns, timeline = samples
    for table in ("turns", "turn_snapshots"):
        assert turns.malformed[table] > 0
        for column in ("runtime_key", "inference_id"):
            assert turns.backfilled[f"{table}.{column}"] > 0
            assert turns.unknown[f"{table}.{column}"] > 0
    assert turns.absent_metadata["turns"] > 0
    assert turns.phase_disagreement_turns > 0
    assert turns.late_switch_turns > turns.failed_after_switch_turns > 0
    assert turns.orphan_snapshot_turns > 0 and turns.orphan_snapshots > 0
    assert turns.default_turn_id_conversations > 0
    assert turns.evicted_conversations > 0
    assert timeline.pointers_empty > 0 and timeline.switch_entities > 0
    assert set(timeline.pointer_verdicts.values()) == {
        "used by a turn",
        "explained by a recorded switch",
        "unexplained",
        "no turns in this file",
    }


def test_metadata_uses_every_alias_and_shape(samples) -> None:
    directory, _, _ = samples
    shapes: Counter[str] = Counter()
    documents = [
        r[0] for r in _rows(directory / "turns.db", "SELECT turn_metadata_json FROM turns")
    ]
    documents += [
        json.dumps(metadata_of_payload(r[0]))
        for r in _rows(directory / "turns.db", "SELECT payload FROM turn_snapshots")
    ]
    for text in documents:
        try:
            md = json.loads(text)
        except ValueError:
            shapes["invalid json"] += 1
            continue
        if not isinstance(md, dict):
            shapes[f"not an object: {type(md).__name__}"] += 1
            continue
        for key in ("geppetto.runtime@v1", "runtime", "runtime_key"):
            value = md.get(key)
            if isinstance(value, dict):
                shapes.update(f"{key} object.{field}" for field in value)
            elif key in md:
                shapes[f"{key} {type(value).__name__}"] += 1
        for key in ("geppetto.inference_id@v1", "inference_id"):
            if key in md:
                shapes[f"{key} {type(md[key]).__name__}"] += 1
    expected = {
        "geppetto.runtime@v1 str",
        "geppetto.runtime@v1 NoneType",
        "geppetto.runtime@v1 object.runtime_key",
        "geppetto.runtime@v1 object.key",
        "geppetto.runtime@v1 object.slug",
        "geppetto.runtime@v1 object.profile",
        "geppetto.runtime@v1 object.profile_key",
        "runtime str",
        "runtime object.slug",
        "runtime_key str",
        "geppetto.inference_id@v1 str",
        "inference_id str",
        "inference_id int",
        "invalid json",
        "not an object: NoneType",
    }
    assert expected <= set(shapes), sorted(expected - set(shapes))


def test_expected_values_follow_the_domain_projection(samples) -> None:
    """The generator's intent and persisters.model's projection are two independent statements of
    the same rules; they must agree on every turns row."""
    directory, turns, _ = samples
    rows = _rows(
        directory / "turns.db",
        "SELECT conv_id, session_id, turn_id, turn_metadata_json FROM turns",
    )
    assert len(rows) == turns.turn_rows == len(turns.expected_turns)
    for conv_id, session_id, turn_id, text in rows:
        try:
            metadata = json.loads(text)
        except ValueError:
            metadata = None
        metadata = metadata if isinstance(metadata, dict) else None
        expected = turns.expected_turns[(conv_id, session_id, turn_id)]
        assert (extract_runtime_key(metadata), extract_inference_id(metadata)) == expected


def test_snapshot_counts_follow_the_domain_projection(samples) -> None:
    directory, turns, _ = samples
    payloads = [r[0] for r in _rows(directory / "turns.db", "SELECT payload FROM turn_snapshots")]
    assert len(payloads) == turns.snapshot_rows
    runtime = sum(bool(extract_runtime_key(metadata_of_payload(p))) for p in payloads)
    inference = sum(bool(extract_inference_id(metadata_of_payload(p))) for p in payloads)
    assert runtime == turns.backfilled["turn_snapshots.runtime_key"]
    assert inference == turns.backfilled["turn_snapshots.inference_id"]
    kinds = Counter(_payload_kind(p) for p in payloads)
    assert kinds["malformed"] == turns.malformed["turn_snapshots"]
    assert kinds["absent"] == turns.absent_metadata["turn_snapshots"] > 0


def _payload_kind(payload: str) -> str:
    """How the migration classifies a snapshot payload's metadata (stated independently)."""
    try:
        document = json.loads(payload)
    except ValueError:
        return "malformed"
    if not isinstance(document, dict):
        return "malformed"
    metadata = document.get("metadata")
    if metadata is None:
        return "absent"  # no metadata member, or null (Go's nil map)
    return "ok" if isinstance(metadata, dict) else "malformed"


def test_both_files_describe_the_same_conversations(samples) -> None:
    directory, turns, timeline = samples
    timeline_db = directory / "timeline3.db"
    timeline_ids = {r[0] for r in _rows(timeline_db, "SELECT conv_id FROM conversations")}
    turn_ids = {r[0] for r in _rows(directory / "turns.db", "SELECT conv_id FROM turn_snapshots")}
    assert turn_ids == timeline_ids
    assert len(timeline_ids) == timeline.conversations == turns.conversations
    pointers = {r[0] for r in _rows(timeline_db, "SELECT runtime_key FROM conversations")}
    assert pointers <= {"", *PROFILES.values()}
    kinds = {r[0] for r in _rows(timeline_db, "SELECT kind FROM timeline_entities")}
    assert {"message", "tool_call", "tool_result", SWITCH_KIND} <= kinds
    assert SWITCH_KIND in SWITCH_ENTITY_KINDS  # the doctor reads what the samples write


def test_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    target = tmp_path / "turns.db"
    target.write_text("precious")
    with pytest.raises(FileExistsError):
        make_old_turns_db(target)
    assert target.read_text() == "precious"
    with pytest.raises(FileExistsError):
        make_samples(tmp_path)
    assert not (tmp_path / "timeline3.db").exists()  # checked both before writing either
    stats = make_old_turns_db(target, overwrite=True, conversations=2, turns=2)
    assert _rows(target, "SELECT count(*) FROM turns")[0][0] == stats.turn_rows


def test_rejects_empty_sizes(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        make_old_turns_db(tmp_path / "x.db", conversations=0)
