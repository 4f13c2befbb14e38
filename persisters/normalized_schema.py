"""The real server's normalized layout, and how turnsim keeps its rules on it.

The real chat server (pinocchio's SQLite turn store, GP-26 cutover) keeps a turn as one
``turns`` row, its blocks content-addressed in ``blocks`` and each snapshot as one
``turn_block_membership`` row per block; the conversation index is
``timeline_conversations`` in a separate timeline database, its pointer column called
``runtime_key`` (the API's ``current_runtime_key``). The DDL below is the real one,
verbatim (pinocchio's ``turn_store_sqlite.go`` and ``timeline_store_sqlite.go`` at the
GP-26 cutover); docs/migration-playbook.md, section 6, is the operator's view of it.

That layout cannot hold what rules 4 and 8 need: a snapshot is keyed by its millisecond
(two saves of one phase in one millisecond replace each other), a snapshot without blocks
has no rows at all, and the runtime columns exist per turn only, so a snapshot reports
whatever the turn row says now. turnsim therefore adds, and the real server ignores:

* ``turn_snapshots``, turnsim's append-only snapshot log (the same table as in its own
  layout, :data:`persisters.schema.SNAPSHOTS_DDL`): one row per save, with the payload as
  saved and the projection that save recorded. Snapshots the real server wrote are
  copied into it by the migration, their payload rebuilt from their blocks;
* ``timeline_conversations.profile_slug``, which the conversation index records;
* ``turns_by_conv_created`` and the snapshot log's indexes.

Every save writes the real tables too (turn row, blocks, membership) exactly as the real
store would, so the real server and its operators' SQL read what turnsim wrote.
"""

from __future__ import annotations

import attrs

from persisters.blocks import HASH_ALGORITHM
from persisters.schema import (
    ADDABLE_COLUMNS,
    INDEXES,
    REQUIRED_COLUMNS,
    SNAPSHOTS_DDL,
    TURNSIM,
    Layout,
)

# The real DDL (pinocchio pkg/persistence/chatstore/turn_store_sqlite.go at the GP-26 cutover).

REAL_TURNS_DDL = """
CREATE TABLE IF NOT EXISTS turns (
  conv_id TEXT NOT NULL,
  session_id TEXT NOT NULL,
  turn_id TEXT NOT NULL,
  turn_created_at_ms INTEGER NOT NULL,
  turn_metadata_json TEXT NOT NULL DEFAULT '{}',
  turn_data_json TEXT NOT NULL DEFAULT '{}',
  runtime_key TEXT NOT NULL DEFAULT '',
  inference_id TEXT NOT NULL DEFAULT '',
  updated_at_ms INTEGER NOT NULL,
  PRIMARY KEY (conv_id, session_id, turn_id)
)"""

BLOCKS_DDL = f"""
CREATE TABLE IF NOT EXISTS blocks (
  block_id TEXT NOT NULL,
  content_hash TEXT NOT NULL,
  hash_algorithm TEXT NOT NULL DEFAULT '{HASH_ALGORITHM}',
  kind TEXT NOT NULL,
  role TEXT NOT NULL DEFAULT '',
  payload_json TEXT NOT NULL DEFAULT '{{}}',
  block_metadata_json TEXT NOT NULL DEFAULT '{{}}',
  first_seen_at_ms INTEGER NOT NULL,
  PRIMARY KEY (block_id, content_hash)
)"""

MEMBERSHIP_DDL = """
CREATE TABLE IF NOT EXISTS turn_block_membership (
  conv_id TEXT NOT NULL,
  session_id TEXT NOT NULL,
  turn_id TEXT NOT NULL,
  phase TEXT NOT NULL,
  snapshot_created_at_ms INTEGER NOT NULL,
  ordinal INTEGER NOT NULL,
  block_id TEXT NOT NULL,
  content_hash TEXT NOT NULL,
  PRIMARY KEY (conv_id, session_id, turn_id, phase, snapshot_created_at_ms, ordinal),
  FOREIGN KEY (conv_id, session_id, turn_id)
    REFERENCES turns(conv_id, session_id, turn_id) ON DELETE CASCADE,
  FOREIGN KEY (block_id, content_hash) REFERENCES blocks(block_id, content_hash)
)"""

#: pinocchio pkg/persistence/chatstore/timeline_store_sqlite.go, plus turnsim's
#: ``profile_slug`` (additive, with a default: the real store never names it).
TIMELINE_CONVERSATIONS_DDL = """
CREATE TABLE IF NOT EXISTS timeline_conversations (
  conv_id TEXT PRIMARY KEY,
  session_id TEXT NOT NULL,
  runtime_key TEXT NOT NULL DEFAULT '',
  created_at_ms INTEGER NOT NULL,
  last_activity_ms INTEGER NOT NULL,
  last_seen_version INTEGER NOT NULL DEFAULT 0,
  has_timeline INTEGER NOT NULL DEFAULT 1,
  status TEXT NOT NULL DEFAULT 'active',
  last_error TEXT NOT NULL DEFAULT '',
  profile_slug TEXT NOT NULL DEFAULT ''
)"""

#: The real indexes (the GP-26 cutover added the two ``_updated`` ones on runtime and
#: inference id); name -> "table (columns)".
REAL_INDEXES: dict[str, str] = {
    "turns_by_conv_session": "turns (conv_id, session_id, updated_at_ms DESC)",
    "turns_by_session": "turns (session_id, updated_at_ms DESC)",
    "turns_by_conv_runtime_updated": INDEXES["turns_by_conv_runtime_updated"],
    "turns_by_conv_inference_updated": INDEXES["turns_by_conv_inference_updated"],
    "blocks_by_kind_role": "blocks (kind, role)",
    "turn_block_membership_by_turn_phase": (
        "turn_block_membership (conv_id, session_id, turn_id, phase, "
        "snapshot_created_at_ms DESC, ordinal)"
    ),
    "turn_block_membership_by_block": "turn_block_membership (block_id, content_hash)",
    "timeline_conversations_by_last_activity": (
        "timeline_conversations (last_activity_ms DESC, conv_id)"
    ),
    "timeline_conversations_by_session": "timeline_conversations (session_id)",
}

#: The turn tables of a real database from before the cutover, as the real server left
#: them (no runtime_key / inference_id, neither of the two GP-26 indexes). For samples
#: and tests.
PRE_CUTOVER_TURNS_SCHEMA = ";\n".join(
    [
        REAL_TURNS_DDL.replace("  runtime_key TEXT NOT NULL DEFAULT '',\n", "").replace(
            "  inference_id TEXT NOT NULL DEFAULT '',\n", ""
        ),
        BLOCKS_DDL,
        MEMBERSHIP_DDL,
        *(
            f"CREATE INDEX IF NOT EXISTS {name} ON {definition}"
            for name, definition in REAL_INDEXES.items()
            if definition.split(" ", 1)[0] in ("turns", "blocks", "turn_block_membership")
            and name not in ("turns_by_conv_runtime_updated", "turns_by_conv_inference_updated")
        ),
    ]
)

#: The real timeline database's conversation table (unchanged by the cutover: its
#: ``runtime_key`` was already the pointer). For samples and tests.
REAL_TIMELINE_SCHEMA = ";\n".join(
    [
        TIMELINE_CONVERSATIONS_DDL.replace(",\n  profile_slug TEXT NOT NULL DEFAULT ''", ""),
        *(
            f"CREATE INDEX IF NOT EXISTS {name} ON {definition}"
            for name, definition in REAL_INDEXES.items()
            if definition.startswith("timeline_conversations ")
        ),
    ]
)

#: The real layout as turnsim opens it: the real tables, the snapshot log, the index.
NORMALIZED = Layout(
    name="normalized",
    ddl={
        "turns": REAL_TURNS_DDL,
        "blocks": BLOCKS_DDL,
        "turn_block_membership": MEMBERSHIP_DDL,
        "turn_snapshots": SNAPSHOTS_DDL.format(name="turn_snapshots"),
        "timeline_conversations": TIMELINE_CONVERSATIONS_DDL,
    },
    required={
        "turns": REQUIRED_COLUMNS["turns"],
        "blocks": ("block_id", "content_hash", "kind", "payload_json", "first_seen_at_ms"),
        "turn_block_membership": (
            "conv_id",
            "session_id",
            "turn_id",
            "phase",
            "snapshot_created_at_ms",
            "ordinal",
            "block_id",
            "content_hash",
        ),
        "turn_snapshots": REQUIRED_COLUMNS["turn_snapshots"],
        "timeline_conversations": (
            "conv_id",
            "session_id",
            "runtime_key",
            "created_at_ms",
            "last_activity_ms",
        ),
    },
    addable={
        "turns": ADDABLE_COLUMNS["turns"],
        "blocks": {
            "hash_algorithm": f"TEXT NOT NULL DEFAULT '{HASH_ALGORITHM}'",
            "role": "TEXT NOT NULL DEFAULT ''",
            "block_metadata_json": "TEXT NOT NULL DEFAULT '{}'",
        },
        "turn_snapshots": ADDABLE_COLUMNS["turn_snapshots"],
        "timeline_conversations": {"profile_slug": "TEXT NOT NULL DEFAULT ''"},
    },
    indexes={**REAL_INDEXES, **{n: d for n, d in INDEXES.items() if n not in REAL_INDEXES}},
    conversations="timeline_conversations",
    pointer="runtime_key",
)

#: The turn tables of :data:`NORMALIZED` (a turn database whose index lives elsewhere).
NORMALIZED_TURNS = NORMALIZED.only("turns", "blocks", "turn_block_membership", "turn_snapshots")
#: A timeline database: only the conversation index of :data:`NORMALIZED`.
TIMELINE = attrs.evolve(NORMALIZED.only("timeline_conversations"), name="timeline")

#: Tables that only the real layout has.
_REAL_ONLY = frozenset({"blocks", "turn_block_membership"})


def layout_of(tables: set[str] | frozenset[str]) -> Layout | None:
    """The layout a file with these tables is of, or None when it is of neither.

    A file with ``blocks`` or ``turn_block_membership`` is :data:`NORMALIZED` (or, without
    a ``timeline_conversations`` table, :data:`NORMALIZED_TURNS`: its conversation index
    lives in a timeline database); one whose only known table is
    ``timeline_conversations`` is :data:`TIMELINE`; one with any of turnsim's tables is
    :data:`persisters.schema.TURNSIM`.
    """
    if tables & _REAL_ONLY:
        return NORMALIZED if "timeline_conversations" in tables else NORMALIZED_TURNS
    if tables & set(TURNSIM.tables):
        return TURNSIM
    if "timeline_conversations" in tables:
        return TIMELINE
    return None
