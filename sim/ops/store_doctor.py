"""``turnsim db doctor module:factory``: the doctor's history checks on a store of your own.

A plug-in store has no SQL turnsim can show, so these checks read it through the
TurnStore Protocol (every snapshot, every turn of every conversation, the conversation
index) and judge the rows exactly as :mod:`sim.ops.checks` judges SQLite's: the same
names, severities and messages. Each :class:`~sim.ops.doctor.Check` says in ``sql`` which
Protocol calls it made. Read-only: only reads are called.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from persisters.model import MAX_LIMIT, TurnQuery
from persisters.store import TurnStore
from sim.ops.checks import (
    CheckContext,
    _judge_orphans,
    _judge_phases,
    _judge_pointer,
    _judge_unknown,
)
from sim.ops.doctor import MAX_RESULT_ROWS, Check, DoctorReport

_NO_FILE = CheckContext(None, "", {})  # type: ignore[arg-type] - the judges read ``path``


def _check(name: str, calls: str, columns: tuple[str, ...], rows: list[Any], judge: Any) -> Check:
    severity, message = judge(rows, _NO_FILE)
    return Check(name, severity, calls, columns, tuple(rows[:MAX_RESULT_ROWS]), len(rows), message)


async def doctor_store(store: TurnStore, label: str) -> DoctorReport:
    """Run the history checks on ``store`` through its Protocol (reads only)."""
    snapshots = sorted(await store.list(TurnQuery(limit=MAX_LIMIT)), key=lambda s: s.snapshot_id)
    conversations = await store.conversations.list()
    conv_ids = sorted({c.conv_id for c in conversations} | {s.conv_id for s in snapshots})
    turns = [t for conv_id in conv_ids for t in await store.list_turns(conv_id)]
    keys = {(t.conv_id, t.session_id, t.turn_id) for t in turns}

    by_turn: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
    for s in snapshots:
        by_turn[(s.conv_id, s.session_id, s.turn_id)].append(s)
    phases = [
        (*key, ", ".join(f"{s.phase}={s.runtime_key}" for s in snaps))
        for key, snaps in sorted(by_turn.items())
        if len({s.runtime_key for s in snaps if s.runtime_key}) > 1
    ]
    orphans = [(*key, len(snaps)) for key, snaps in sorted(by_turn.items()) if key not in keys]
    runtimes: dict[str, set[str]] = defaultdict(set)
    for t in turns:
        if t.runtime_key:
            runtimes[t.conv_id].add(t.runtime_key)
    has_turns = {t.conv_id for t in turns}
    pointer = []
    for c in conversations:
        if not c.current_runtime_key or c.current_runtime_key in runtimes[c.conv_id]:
            continue
        verdict = "unexplained" if c.conv_id in has_turns else "no turns in this file"
        pointer.append(
            (c.conv_id, c.current_runtime_key, verdict, ", ".join(sorted(runtimes[c.conv_id])))
        )
    pointer.sort(key=lambda r: (r[2] != "unexplained", r[2], r[0]))
    unknown = [
        ("turns", len(turns), sum(not t.runtime_key for t in turns),
         sum(not t.inference_id for t in turns)),
        ("turn_snapshots", len(snapshots), sum(not s.runtime_key for s in snapshots),
         sum(not s.inference_id for s in snapshots)),
    ]  # fmt: skip
    every = "store.list(TurnQuery(limit=MAX_LIMIT))"
    checks = (
        _check(
            "phase_runtime_agreement",
            f"{every}, grouped by turn",
            ("conv_id", "session_id", "turn_id", "phases"),
            phases,
            _judge_phases,
        ),
        _check(
            "orphan_snapshots",
            f"{every} against store.list_turns(conv_id) of each conversation",
            ("conv_id", "session_id", "turn_id", "snapshots"),
            orphans,
            _judge_orphans,
        ),
        _check(
            "conversation_pointer",
            "store.conversations.list() against store.list_turns(conv_id)",
            ("conv_id", "current_runtime_key", "verdict", "turn_runtime_keys"),
            pointer,
            _judge_pointer,
        ),
        _check(
            "unknown_rows",
            f"store.list_turns(conv_id) of each conversation and {every}",
            ("table_name", "rows", "unknown_runtime_key", "unknown_inference_id"),
            unknown,
            _judge_unknown,
        ),
    )
    return DoctorReport(label, checks)
