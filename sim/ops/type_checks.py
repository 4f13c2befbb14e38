"""The doctor's ``stored_types`` check: rows holding a value of another type than the
schema declares (a BLOB where text belongs, text or a negative number in a timestamp, a
phase no snapshot has), which the debug API leaves out of its answers
(:mod:`sim.api.typed`). A database written by another program can hold anything.
"""

from __future__ import annotations

from typing import Any

from persisters.model import PHASES
from sim.ops.checks import CheckContext, CheckSpec

#: table -> (text columns, millisecond columns) the API shows.
TYPED_COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "turn_snapshots": (
        ("conv_id", "session_id", "turn_id", "phase", "payload", "runtime_key", "inference_id"),
        ("created_at_ms",),
    ),
    "turns": (
        ("conv_id", "session_id", "turn_id", "runtime_key", "inference_id"),
        ("turn_created_at_ms", "updated_at_ms"),
    ),
    "conversations": (("conv_id", "session_id", "current_runtime_key"), ("last_activity_ms",)),
    "timeline_conversations": (("conv_id", "session_id", "runtime_key"), ("last_activity_ms",)),
}


def _odd_sql(ctx: CheckContext) -> str:
    parts = []
    phases = ", ".join(f"'{p}'" for p in PHASES)
    for table, (texts, numbers) in TYPED_COLUMNS.items():
        have = ctx.columns.get(table, frozenset())
        conditions = [f"typeof({c}) <> 'text'" for c in texts if c in have]
        conditions += [f"typeof({c}) <> 'integer' OR {c} < 0" for c in numbers if c in have]
        if table == "turn_snapshots" and "phase" in have:
            conditions.append(f"phase NOT IN ({phases})")
        if not conditions or "conv_id" not in have:
            continue
        parts.append(
            f"SELECT '{table}' AS table_name, rowid AS row_id, conv_id\n"
            f"FROM {table}\nWHERE " + "\n   OR ".join(conditions)
        )
    return "\nUNION ALL\n".join(parts) or "SELECT NULL AS table_name, NULL AS row_id LIMIT 0"


def _judge(rows: list[tuple[Any, ...]], ctx: CheckContext) -> tuple[str, str]:
    if not rows:
        return "ok", "every stored value has its declared type"
    counts: dict[str, int] = {}
    for row in rows:
        counts[row[0]] = counts.get(row[0], 0) + 1
    parts = ", ".join(f"{t} {n}" for t, n in sorted(counts.items()))
    return "warning", (
        f"{len(rows)} row(s) hold a value of another type than declared ({parts}: a BLOB or "
        "number where text belongs, text or a negative number in a timestamp, an unknown "
        "phase); the debug API leaves them out. Written by another program? Inspect them "
        "with the query"
    )


STORED_TYPES = CheckSpec("stored_types", (), _odd_sql, _judge)
