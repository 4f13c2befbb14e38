"""Which checks a file's layout gets, and the one only the real server's layout needs.

:func:`checks_for` picks from :data:`sim.ops.checks.CHECKS` for a layout
(:class:`persisters.schema.Layout`): turnsim's own gets them all; the real layout's turn
database gets them plus ``snapshots_logged``; a timeline database gets its structure and
its conversation pointers.
"""

from __future__ import annotations

from typing import Any

from persisters.normalized_schema import TIMELINE
from persisters.schema import TURNSIM, Layout
from persisters.write_once import TRIGGERS
from sim.ops.checks import CHECKS, CheckContext, CheckSpec, pointer_check
from sim.ops.run_checks import MIXED_RUNS
from sim.ops.type_checks import STORED_TYPES

# --- snapshots of the real layout missing from the snapshot log --------------------------

_MEMBERSHIP_KEY = ("conv_id", "session_id", "turn_id", "phase", "snapshot_created_at_ms")


def _logged_sql(ctx: CheckContext) -> str:
    return (
        "SELECT m.conv_id, m.session_id, m.turn_id, m.phase, m.snapshot_created_at_ms,\n"
        "       count(*) AS blocks\n"
        "FROM turn_block_membership m\n"
        "WHERE NOT EXISTS (SELECT 1 FROM turn_snapshots s\n"
        "                  WHERE s.conv_id = m.conv_id AND s.session_id = m.session_id\n"
        "                    AND s.turn_id = m.turn_id AND s.phase = m.phase\n"
        "                    AND s.created_at_ms = m.snapshot_created_at_ms)\n"
        "GROUP BY m.conv_id, m.session_id, m.turn_id, m.phase, m.snapshot_created_at_ms\n"
        "ORDER BY m.snapshot_created_at_ms, m.conv_id, m.session_id, m.turn_id, m.phase"
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _judge_logged(rows: list[tuple[Any, ...]], ctx: CheckContext) -> tuple[str, str]:
    if not rows:
        return "ok", "every snapshot of turn_block_membership is in turnsim's snapshot log"
    return "warning", (
        f"{_plural(len(rows), 'snapshot')} of turn_block_membership missing from turnsim's "
        "snapshot log (turn_snapshots), e.g. written by the real server after the last "
        "migration: turnsim's reads (serve, the debug API) do not show them. "
        f"`turnsim db migrate {ctx.path}` copies them, their payload rebuilt from the blocks"
    )


_LOGGED = CheckSpec(
    "snapshots_logged",
    (
        *(f"turn_block_membership.{c}" for c in _MEMBERSHIP_KEY),
        *(f"turn_snapshots.{c}" for c in ("conv_id", "session_id", "turn_id", "phase")),
        "turn_snapshots.created_at_ms",
    ),
    _logged_sql,
    _judge_logged,
)


# --- turnsim's write-once triggers -------------------------------------------------------


def _triggers_sql(ctx: CheckContext) -> str:
    values = ", ".join(f"('{name}')" for name in TRIGGERS)
    return (
        f"WITH required(name) AS (VALUES {values})\n"
        "SELECT r.name FROM required r\n"
        "WHERE NOT EXISTS (SELECT 1 FROM sqlite_master m\n"
        "                  WHERE m.type = 'trigger' AND m.name = r.name)\n"
        "ORDER BY r.name"
    )


def _judge_triggers(rows: list[tuple[Any, ...]], ctx: CheckContext) -> tuple[str, str]:
    if not rows:
        return "ok", (
            f"all {len(TRIGGERS)} write-once triggers are installed: the file itself refuses "
            "rewriting a turn's runtime_key/inference_id and any UPDATE or DELETE of a snapshot"
        )
    return "warning", (
        f"write-once trigger(s) missing: {', '.join(r[0] for r in rows)}; any writer can "
        f"rewrite history in this file. `turnsim db migrate {ctx.path}` installs them"
    )


_TRIGGERS = CheckSpec(
    "write_once_triggers",
    ("turns.runtime_key", "turns.inference_id", "turn_snapshots.snapshot_id"),
    _triggers_sql,
    _judge_triggers,
)


def checks_for(layout: Layout) -> tuple[CheckSpec, ...]:
    """The checks that apply to a file of ``layout``, in the order they run.

    The real layout's turn database has turnsim's checks and ``snapshots_logged``; its
    conversation pointer is checked where ``timeline_conversations`` lives (a timeline
    database: only its own structure and the pointer, no turns to compare with).
    """
    by_name = {c.name: c for c in CHECKS}
    if layout.name == TURNSIM.name:  # only turnsim's own layout has write-once triggers
        at = [c.name for c in CHECKS].index("required_indexes") + 1
        return (*CHECKS[:at], _TRIGGERS, *CHECKS[at:-1], MIXED_RUNS, STORED_TYPES, CHECKS[-1])
    if layout.tables == TIMELINE.tables:
        names = ["integrity", "schema_version", "required_columns", "required_indexes"]
        return (*(by_name[n] for n in names), pointer_check(layout), by_name["free_pages"])
    out = []
    for check in CHECKS:
        if check.name == "conversation_pointer":
            if layout.conversations in layout.tables:
                out.append(pointer_check(layout))
            continue
        if check.name == "free_pages":
            out += [MIXED_RUNS, STORED_TYPES]
        out.append(check)
        if check.name == "column_vs_metadata":
            out.append(_LOGGED)
    return tuple(out)
