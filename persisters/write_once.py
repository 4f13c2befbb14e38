"""Write-once in the database itself: SQLite triggers that refuse rewriting history (rule 4).

The store refuses a conflicting save in Python (:func:`persisters.store.refuse_rewrite`);
these triggers make the file refuse it too, whoever writes: a raw ``sqlite3`` session,
another program, or a store whose conflict policy was swapped (the ``upsert-overwrite``
variant). They refuse

* an UPDATE that changes a turn's non-empty ``runtime_key`` or ``inference_id``
  (filling an empty one stays allowed: that is what the migration's backfill does);
* any UPDATE or DELETE of a stored snapshot (``turn_snapshots`` is append-only).

Each aborts the statement with ``RAISE(ABORT, 'turnsim write-once: ...')``; the SQLite
store maps that error to :class:`~persisters.errors.TurnRewriteError`. They are installed
(``CREATE TRIGGER IF NOT EXISTS``) by :func:`persisters.migration.migrate` on turnsim's
own layout, i.e. when a store creates a database and by ``turnsim db migrate``, and are
not tied to a schema version. The real server's layout gets none: that schema is the real
server's, whose own upsert rewrites ``turns`` (see docs/check.md).
"""

from __future__ import annotations

import sqlite3

from persisters.errors import TurnRewriteError

#: Every trigger's message starts with this; :func:`is_write_once_refusal` looks for it.
MARK = "turnsim write-once"

#: The turns trigger's message (SQL-quoted), the same words on every database.
TURNS_REFUSAL = f"{MARK}: a turn''s recorded runtime_key/inference_id is never rewritten"

#: Trigger name -> its CREATE statement (idempotent).
TRIGGERS: dict[str, str] = {
    "turnsim_turns_write_once": (
        "CREATE TRIGGER IF NOT EXISTS turnsim_turns_write_once "
        "BEFORE UPDATE OF runtime_key, inference_id ON turns "
        "WHEN (OLD.runtime_key <> '' AND NEW.runtime_key IS NOT OLD.runtime_key) "
        "OR (OLD.inference_id <> '' AND NEW.inference_id IS NOT OLD.inference_id) "
        f"BEGIN SELECT RAISE(ABORT, '{TURNS_REFUSAL}'); END"
    ),
    "turnsim_snapshots_no_update": (
        "CREATE TRIGGER IF NOT EXISTS turnsim_snapshots_no_update "
        "BEFORE UPDATE ON turn_snapshots "
        f"BEGIN SELECT RAISE(ABORT, '{MARK}: snapshots are append-only (UPDATE of "
        "turn_snapshots refused)'); END"
    ),
    "turnsim_snapshots_no_delete": (
        "CREATE TRIGGER IF NOT EXISTS turnsim_snapshots_no_delete "
        "BEFORE DELETE ON turn_snapshots "
        f"BEGIN SELECT RAISE(ABORT, '{MARK}: snapshots are append-only (DELETE from "
        "turn_snapshots refused)'); END"
    ),
}


def existing_triggers(conn: sqlite3.Connection) -> set[str]:
    """The names of turnsim's write-once triggers the database holds."""
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall()
    return {r[0] for r in rows} & set(TRIGGERS)


def missing_triggers(conn: sqlite3.Connection) -> tuple[str, ...]:
    """turnsim's write-once triggers the database lacks, in :data:`TRIGGERS` order."""
    have = existing_triggers(conn)
    return tuple(name for name in TRIGGERS if name not in have)


def drop_triggers(conn: sqlite3.Connection) -> None:
    """Drop the write-once triggers (the migration does, inside its transaction, to
    backfill and rebuild; it reinstalls them before committing)."""
    for name in TRIGGERS:
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")


def install_triggers(conn: sqlite3.Connection) -> tuple[str, ...]:
    """Create the missing write-once triggers; return the names it added."""
    added = missing_triggers(conn)
    for name in added:
        conn.execute(TRIGGERS[name])
    return added


def is_write_once_refusal(exc: BaseException) -> bool:
    """Whether ``exc`` is one of these triggers (or a server store's) refusing a statement."""
    return MARK in str(exc)


def write_once_error(
    key: tuple[str, str, str], stored: tuple[str, str], attempted: tuple[str, str]
) -> TurnRewriteError:
    """The :class:`TurnRewriteError` for a save the write-once trigger refused."""
    field = "runtime_key" if stored[0] and attempted[0] != stored[0] else "inference_id"
    index = 0 if field == "runtime_key" else 1
    return TurnRewriteError(*key, field, stored[index], attempted[index], by_trigger=True)
