"""Old sample databases in the real server's normalized layout, and its snapshot writer.

The same simulated history as :mod:`sim.ops.samples` (same seed, same conversations,
turns, ids and metadata), written as the real server stored it before the cutover:

* :func:`make_real_turns_db`: a turn database of
  :data:`persisters.normalized_schema.PRE_CUTOVER_TURNS_SCHEMA` (``turns`` without
  ``runtime_key`` / ``inference_id``, ``blocks``, ``turn_block_membership``), each
  snapshot saved by :func:`save_real_snapshot`;
* :func:`make_real_timeline_db`: a timeline database with ``timeline_conversations``
  (:data:`persisters.normalized_schema.REAL_TIMELINE_SCHEMA`), whose ``runtime_key`` is
  the pointer.

What the real layout could not keep is not in these files, as it was not in the real
ones: a snapshot whose write died half-way (its transaction rolled back), the snapshots
of a turn whose row a retention job deleted (``ON DELETE CASCADE``), and any runtime
per snapshot (the layout records one per turn row: the last save's metadata won).
:class:`~sim.ops.samples.SampleStats` says what a correct migration reports for them.
"""

from __future__ import annotations

import os
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

from persisters.blocks import HASH_ALGORITHM, blocks_of_payload
from persisters.normalized_schema import PRE_CUTOVER_TURNS_SCHEMA, REAL_TIMELINE_SCHEMA
from sim.ops.samples import (
    DEFAULT_CONVERSATIONS,
    DEFAULT_SEED,
    DEFAULT_TURNS,
    SampleStats,
    TimelineStats,
    build_world,
    fresh_path,
    write_database,
)

#: The real store's turn row upsert before the cutover (no runtime columns yet): the
#: metadata and data of the newest save win, the creation time is the earliest.
_UPSERT_TURN = (
    "INSERT INTO turns (conv_id, session_id, turn_id, turn_created_at_ms, turn_metadata_json, "
    "turn_data_json, updated_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (conv_id, session_id, turn_id) DO UPDATE SET "
    "turn_created_at_ms = min(turns.turn_created_at_ms, excluded.turn_created_at_ms), "
    "turn_metadata_json = excluded.turn_metadata_json, "
    "turn_data_json = excluded.turn_data_json, "
    "updated_at_ms = max(turns.updated_at_ms, excluded.updated_at_ms)"
)
_UPSERT_BLOCK = (
    "INSERT INTO blocks (block_id, content_hash, hash_algorithm, kind, role, payload_json, "
    "block_metadata_json, first_seen_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (block_id, content_hash) DO UPDATE SET kind = excluded.kind, "
    "role = excluded.role, payload_json = excluded.payload_json, "
    "block_metadata_json = excluded.block_metadata_json, "
    "first_seen_at_ms = min(blocks.first_seen_at_ms, excluded.first_seen_at_ms)"
)
_DELETE_MEMBERSHIP = (
    "DELETE FROM turn_block_membership WHERE conv_id = ? AND session_id = ? AND turn_id = ? "
    "AND phase = ? AND snapshot_created_at_ms = ?"
)
_INSERT_MEMBERSHIP = (
    "INSERT OR REPLACE INTO turn_block_membership (conv_id, session_id, turn_id, phase, "
    "snapshot_created_at_ms, ordinal, block_id, content_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def save_real_snapshot(
    conn: sqlite3.Connection,
    key: tuple[str, str, str],
    phase: str,
    created_at_ms: int,
    payload: str,
    *,
    turn_metadata_json: str,
    turn_data_json: str,
) -> int:
    """Store one snapshot as the real server's pre-cutover store did (its
    ``persistNormalizedSnapshot``): upsert the turn row, upsert each block, replace the
    membership rows of (turn, phase, millisecond). Returns the number of blocks."""
    snapshot = (*key, phase, created_at_ms)
    conn.execute(
        _UPSERT_TURN,
        (*key, created_at_ms, turn_metadata_json, turn_data_json, created_at_ms),
    )
    rows = blocks_of_payload(key[2], payload)
    conn.executemany(
        _UPSERT_BLOCK,
        [
            (
                b.block_id,
                b.content_hash,
                HASH_ALGORITHM,
                b.kind,
                b.role,
                b.payload_json,
                b.metadata_json,
                created_at_ms,
            )
            for b in rows
        ],
    )
    conn.execute(_DELETE_MEMBERSHIP, snapshot)
    conn.executemany(
        _INSERT_MEMBERSHIP, [(*snapshot, b.ordinal, b.block_id, b.content_hash) for b in rows]
    )
    return len(rows)


def make_real_turns_db(
    path: str | os.PathLike[str],
    *,
    seed: int = DEFAULT_SEED,
    conversations: int = DEFAULT_CONVERSATIONS,
    turns: int = DEFAULT_TURNS,
    overwrite: bool = False,
) -> SampleStats:
    """Write a real-layout ``turns.db`` from before the cutover at ``path``.

    The history of :func:`sim.ops.samples.make_old_turns_db` with the same arguments;
    its ``turns`` rows are the same (same metadata, same faults). The stats say what a
    correct ``turnsim db migrate`` reports: its snapshot numbers count the snapshots it
    copies into the snapshot log, each taking its turn row's runtime and inference id.
    """
    p = fresh_path(path, overwrite)
    world = build_world(seed, conversations, turns)
    rows = world.turn_rows
    kept = [r for r in world.snapshot_rows if r.kind != "malformed" and tuple(r.values[:3]) in rows]
    # The turn rows first, as the world recorded them (the newest save's metadata, with
    # the faults the turn row writer had; the first save's time): each snapshot's upsert
    # below then leaves them as they are.
    write_database(
        p,
        PRE_CUTOVER_TURNS_SCHEMA,
        [
            (
                "INSERT INTO turns (conv_id, session_id, turn_id, turn_created_at_ms, "
                "turn_metadata_json, turn_data_json, updated_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [r.values for r in rows.values()],
            )
        ],
    )
    conn = sqlite3.connect(p, isolation_level=None)
    try:
        conn.execute("BEGIN")
        for r in kept:
            conv, session, turn, phase, at, payload = r.values
            row = rows[(conv, session, turn)].values
            save_real_snapshot(
                conn,
                (conv, session, turn),
                phase,
                at,
                payload,
                turn_metadata_json=row[4],
                turn_data_json=row[5],
            )
        conn.execute("COMMIT")
    finally:
        conn.close()
    snapshots = {tuple(r.values[:5]) for r in kept}
    by_turn = Counter(key[:3] for key in snapshots)
    turn_rows = list(rows.values())

    def snapshot_count(select: Any) -> int:
        return sum(n for key, n in by_turn.items() if select(rows[key]))

    return SampleStats(
        path=os.fspath(p),
        seed=seed,
        conversations=conversations,
        turn_rows=len(turn_rows),
        snapshot_rows=len(snapshots),
        backfilled={
            "turns.runtime_key": sum(bool(r.runtime_key) for r in turn_rows),
            "turns.inference_id": sum(bool(r.inference_id) for r in turn_rows),
            "turn_snapshots.runtime_key": snapshot_count(lambda r: r.runtime_key),
            "turn_snapshots.inference_id": snapshot_count(lambda r: r.inference_id),
        },
        unknown={
            "turns.runtime_key": sum(not r.runtime_key for r in turn_rows),
            "turns.inference_id": sum(not r.inference_id for r in turn_rows),
            "turn_snapshots.runtime_key": snapshot_count(lambda r: not r.runtime_key),
            "turn_snapshots.inference_id": snapshot_count(lambda r: not r.inference_id),
        },
        malformed={"turns": sum(r.kind == "malformed" for r in turn_rows), "turn_snapshots": 0},
        # A rebuilt snapshot's metadata is its turn row's: absent when that is not usable.
        absent_metadata={
            "turns": sum(r.kind == "absent" for r in turn_rows),
            "turn_snapshots": snapshot_count(lambda r: r.kind != "ok"),
        },
        phase_disagreement_turns=0,  # one runtime per turn row: phases cannot disagree
        orphan_snapshot_turns=0,  # the membership rows went with their turn row
        orphan_snapshots=0,
        late_switch_turns=world.late_switch_turns,
        failed_after_switch_turns=world.failed_after_switch_turns,
        default_turn_id_conversations=world.default_turn_id_conversations,
        evicted_conversations=world.evicted_conversations,
        expected_turns={k: (r.runtime_key, r.inference_id) for k, r in rows.items()},
        layout="normalized",
    )


def make_real_timeline_db(
    path: str | os.PathLike[str],
    *,
    seed: int = DEFAULT_SEED,
    conversations: int = DEFAULT_CONVERSATIONS,
    turns: int = DEFAULT_TURNS,
    overwrite: bool = False,
) -> TimelineStats:
    """Write a real-layout ``timeline3.db`` (``timeline_conversations``) at ``path``.

    The conversations of :func:`make_real_turns_db` with the same arguments; the pointer
    is ``runtime_key``. The real timeline's entity tables are not written: the file
    holds no recorded profile switches.
    """
    p = fresh_path(path, overwrite)
    world = build_world(seed, conversations, turns)
    write_database(
        p,
        REAL_TIMELINE_SCHEMA,
        [
            (
                "INSERT INTO timeline_conversations (conv_id, session_id, runtime_key, "
                "created_at_ms, last_activity_ms) VALUES (?, ?, ?, ?, ?)",
                [
                    (c.conv_id, c.session_id, c.pointer, c.created_at_ms, c.last_activity_ms)
                    for c in world.conversations
                ],
            )
        ],
    )
    return TimelineStats(
        path=os.fspath(p),
        seed=seed,
        conversations=len(world.conversations),
        pointers_set=sum(bool(c.pointer) for c in world.conversations),
        pointers_empty=sum(not c.pointer for c in world.conversations),
        entities=0,
        switch_entities=0,
        pointer_verdicts=_verdicts(world),
        layout="normalized",
    )


def _verdicts(world: Any) -> dict[str, str]:
    """What the doctor concludes about each pointer on a store with both files' rows (no
    recorded switches: the real timeline's switches are not part of the samples)."""
    used: dict[str, set[str]] = {}
    for (conv_id, _, _), row in world.turn_rows.items():
        used.setdefault(conv_id, set()).add(row.runtime_key)
    verdicts = {}
    for c in world.conversations:
        if not c.pointer:
            continue
        if c.conv_id not in used:
            verdicts[c.conv_id] = "no turns in this file"
        elif c.pointer in used[c.conv_id]:
            verdicts[c.conv_id] = "used by a turn"
        else:
            verdicts[c.conv_id] = "unexplained"
    return verdicts


def make_real_samples(
    directory: str | os.PathLike[str],
    *,
    seed: int = DEFAULT_SEED,
    conversations: int = DEFAULT_CONVERSATIONS,
    turns: int = DEFAULT_TURNS,
    overwrite: bool = False,
) -> tuple[SampleStats, TimelineStats]:
    """Write real-layout ``turns.db`` and ``timeline3.db`` (one history) into ``directory``,
    as :func:`sim.ops.samples.make_samples` does for turnsim's old layout."""
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise NotADirectoryError(f"{d}: exists and is not a directory")
    targets = (d / "turns.db", d / "timeline3.db")
    if not overwrite:
        for t in targets:
            if t.exists() or t.is_symlink():
                raise FileExistsError(f"{t}: already exists; refusing to overwrite a database")
    d.mkdir(parents=True, exist_ok=True)
    size = {"seed": seed, "conversations": conversations, "turns": turns, "overwrite": overwrite}
    return make_real_turns_db(targets[0], **size), make_real_timeline_db(targets[1], **size)
