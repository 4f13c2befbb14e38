"""Checking a database alone: the invariants a final state can prove, and the rest named.

Without the history, what the rows themselves show is judged:

* ``phases-agree``: the stored snapshots of one turn share one runtime and one inference
  id (evidence: the first snapshot of each differing value);
* ``distinct-turns``: no turn row or snapshot without a turn id, no turn whose snapshots
  carry two inference ids (two inferences merged into one turn);
* ``no-empty-runtime`` (rule 8): no turn row created at or after ``new_since_ms`` with an
  empty runtime (a migration leaves ``''`` only on historical rows; give the cutover time
  as ``new_since_ms`` to exempt them);
* ``columns-agree`` (rule 5): each row's ``runtime_key`` / ``inference_id`` are the
  projection of its own metadata wherever the metadata names one;
* ``never-rewritten``, as far as append-only snapshots show it: a turn row whose recorded
  value differs from the one its first snapshot recorded;
* ``pointer-not-history`` (rule 2): no turn row holds its conversation's pointer where the
  turn's own metadata names another runtime (the pointer copied into history);
* ``block-attribution-stable`` and ``phase-snapshot-faithful``, from the stored payloads
  (:mod:`sim.scenario.content_invariants`): a block's attribution never changes and names
  the runtime of its inference's turn row; a phase snapshot ends as its phase does;
* ``tool-pairing`` and ``terminal-is-last``, from the stored snapshots
  (:mod:`sim.scenario.lifecycle_invariants`): every final payload answers its tool calls;
  no snapshot of a turn comes after its final one.

Not judged (each reported with why): ``runtime-bound-at-start`` (which runtime was current
when each inference started is history), ``nothing-lost`` (which saves were attempted),
``pointer-is-current`` (the switches), ``history-continuity`` and ``switch-takes-effect``
(what each inference was fed, and when), ``durable-before-advance``, ``no-zombie-inflight``
and ``single-writer`` (when writes landed, whether a turn without a final still runs, what
ran at the same time). Works on turnsim's layout (a SQLite file or a server
DSN) and the real server's layout (a SQLite file; its snapshots hold no runtime of their
own unless turnsim's migration copied them into ``turn_snapshots``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs

from persisters.errors import StoreError
from persisters.model import (
    TurnSnapshot,
    extract_inference_id,
    extract_runtime_key,
    metadata_of_payload,
    trim_space,
)
from persisters.normalized_schema import layout_of
from persisters.sqlite_database import connect
from persisters.stores import StoreSpec, StoreSpecError
from sim.check.report import CheckInputError, CheckReport, Finding, NotJudged
from sim.runtime.profiles import ProfileRegistry
from sim.scenario.content_invariants import CHECKERS as CONTENT_CHECKERS
from sim.scenario.lifecycle_invariants import FROM_SNAPSHOTS, HISTORY_ONLY
from sim.scenario.run_state import RunState

#: What a snapshot holds, judged from its stored payload (no history needed).
CONTENT_FROM_A_DATABASE = ("block-attribution-stable", "phase-snapshot-faithful")

#: The rules a database alone can prove, in report order (see the module docstring).
DB_INVARIANTS: dict[str, str] = {
    "phases-agree": "all stored phases of a turn share runtime_key and inference_id",
    "distinct-turns": "every turn has a non-empty id and one inference",
    "no-empty-runtime": "no turn written since the cutover has an empty runtime_key",
    "columns-agree": "runtime_key / inference_id columns are the projection of the metadata",
    "never-rewritten": "a turn row still holds the values its first snapshot recorded",
    "pointer-not-history": "no turn row holds the conversation pointer instead of its own runtime",
    "block-attribution-stable": (
        "every block keeps the attribution its first stored snapshot gave it (and names the "
        "runtime of the turn row of its inference)"
    ),
    "phase-snapshot-faithful": "every phase snapshot ends with what its phase ends with",
    "tool-pairing": "every stored final snapshot answers each of its tool calls with a result",
    "terminal-is-last": "no snapshot of a turn is stored after its final one",
}

NOT_FROM_A_DATABASE: tuple[NotJudged, ...] = (
    NotJudged(
        "runtime-bound-at-start",
        "which runtime was current when each inference started is history, not state: "
        "check the run's log",
    ),
    NotJudged(
        "nothing-lost",
        "which saves were attempted (and which failures were surfaced) is history: a "
        "database holds only what was stored",
    ),
    NotJudged(
        "pointer-is-current",
        "the profile switches that set each pointer are history; the database keeps only "
        "the latest pointer",
    ),
    NotJudged(
        "history-continuity",
        "which history each inference was fed is history: check the run's log",
    ),
    NotJudged(
        "switch-takes-effect",
        "when each switch happened relative to each inference is history: check the run's log",
    ),
    *(NotJudged(name, why) for name, why in HISTORY_ONLY.items()),
)

Rows = Callable[[str], Iterable[tuple[Any, ...]]]


@attrs.define
class _Turn:
    """What the snapshots of one turn recorded, in snapshot order."""

    runtimes: dict[str, int] = attrs.field(factory=dict)  # value -> first snapshot id
    inferences: dict[str, int] = attrs.field(factory=dict)


def _key(conv: str, session: str, turn: str) -> str:
    return f"({conv}, {session}, {turn})"


def _projection(metadata: Any) -> tuple[str, str]:
    if not isinstance(metadata, dict):
        return "", ""
    return extract_runtime_key(metadata), extract_inference_id(metadata)


def _metadata_json(text: Any) -> Any:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None  # malformed metadata: `turnsim db doctor` reports it


def _disagree(column: str, projected: str) -> bool:
    return bool(projected) and trim_space(column or "") != projected


def _columns_agree(
    row: str,
    columns: tuple[str, str],
    projection: tuple[str, str],
    said_by: str,
    at: tuple[Any, str, str],
) -> Iterable[Finding]:
    """columns-agree for one row: its runtime_key/inference_id columns against what its
    metadata says (:func:`_projection`; ``at``: the row's evidence, conversation, turn)."""
    where, conv, turn = at
    for name, column, projected in zip(
        ("runtime_key", "inference_id"), columns, projection, strict=True
    ):
        if _disagree(column, projected):
            yield Finding(
                "columns-agree",
                f"{row} stores {name} {column!r} but its {said_by} says {projected!r}",
                (where,),
                conv,
                turn,
            )


def judge(
    rows: Rows, tables: set[str], pointer_table: tuple[str, str] | None, new_since_ms: int
) -> tuple[list[Finding], list[str], list[NotJudged]]:
    """Run the checks over ``rows(sql)``; return findings, what was judged, what was not."""
    findings: list[Finding] = []
    judged = ["distinct-turns", "no-empty-runtime", "columns-agree"]
    not_judged = list(NOT_FROM_A_DATABASE)
    turns: dict[tuple[str, str, str], _Turn] = {}
    stored: list[TurnSnapshot] = []  # for the checkers of what a snapshot holds
    if "turn_snapshots" in tables:
        judged += ["phases-agree", "never-rewritten", *CONTENT_FROM_A_DATABASE, *FROM_SNAPSHOTS]
        for sid, conv, session, turn, phase, runtime, inference, payload in rows(
            "SELECT snapshot_id, conv_id, session_id, turn_id, phase, runtime_key, "
            "inference_id, payload FROM turn_snapshots ORDER BY snapshot_id"
        ):
            where = f"turn_snapshots {sid}"
            if not trim_space(turn or ""):
                findings.append(
                    Finding("distinct-turns", f"snapshot {sid} has no turn id", (where,), conv)
                )
            seen = turns.setdefault((conv, session, turn), _Turn())
            if runtime:
                seen.runtimes.setdefault(runtime, sid)
            if inference:
                seen.inferences.setdefault(inference, sid)
            if isinstance(payload, bytes):
                payload = payload.decode("utf-8", "replace")
            if isinstance(payload, str):
                stored.append(
                    TurnSnapshot(conv, session, turn, phase, runtime, inference, 0, payload, sid)
                )
            findings.extend(
                _columns_agree(
                    f"snapshot {sid} ({phase})",
                    (runtime, inference),
                    _projection(metadata_of_payload(payload) if isinstance(payload, str) else None),
                    "payload's metadata",
                    (where, conv, turn),
                )
            )
        for (conv, session, turn), seen in turns.items():
            where = f"turns {_key(conv, session, turn)}"
            for name, values in (("runtime_key", seen.runtimes), ("inference_id", seen.inferences)):
                if len(values) > 1:
                    ids = tuple(f"turn_snapshots {i}" for i in values.values())
                    findings.append(
                        Finding(
                            "phases-agree",
                            f"the snapshots of turn {_key(conv, session, turn)} disagree on "
                            f"{name}: {', '.join(values)}",
                            ids,
                            conv,
                            turn,
                        )
                    )
            if len(seen.inferences) > 1:
                ids = tuple(f"turn_snapshots {i}" for i in seen.inferences.values())
                findings.append(
                    Finding(
                        "distinct-turns",
                        f"{len(seen.inferences)} inferences saved under one turn id "
                        f"{turn!r}: {', '.join(seen.inferences)}",
                        ids,
                        conv,
                        turn,
                    )
                )
    else:
        not_judged += [
            NotJudged(
                name,
                "the database has no snapshot log (turn_snapshots) with a runtime per "
                "snapshot; `turnsim db migrate` copies the real layout's snapshots into one",
            )
            for name in ("phases-agree", "never-rewritten", *CONTENT_FROM_A_DATABASE)
        ]
        not_judged += [
            NotJudged(name, "the database has no snapshot log (turn_snapshots) to read")
            for name in FROM_SNAPSHOTS
        ]
    pointers: dict[str, str] = {}
    turn_runtimes: dict[str, str] = {}  # inference id -> its turn row's runtime
    if pointer_table is not None:
        judged.append("pointer-not-history")
        table, column = pointer_table
        pointers = {c: p for c, p in rows(f"SELECT conv_id, {column} FROM {table}") if p}
    else:
        not_judged.append(
            NotJudged(
                "pointer-not-history",
                "the conversation index is not in this database (the real layout keeps it "
                "in a separate timeline database), so no pointer can be compared with the "
                "turns",
            )
        )
    for conv, session, turn, runtime, inference, metadata, created in rows(
        "SELECT conv_id, session_id, turn_id, runtime_key, inference_id, turn_metadata_json, "
        "turn_created_at_ms FROM turns ORDER BY conv_id, session_id, turn_id"
    ):
        key = _key(conv, session, turn)
        where = f"turns {key}"
        if inference and runtime:
            turn_runtimes[inference] = runtime
        if not trim_space(turn or ""):
            findings.append(Finding("distinct-turns", f"turn row {key} has no turn id", (where,)))
        if not trim_space(runtime or "") and (created or 0) >= new_since_ms:
            findings.append(
                Finding(
                    "no-empty-runtime",
                    f"turn {key} (created at {created}) has an empty runtime_key; if it is a "
                    "historical row a migration could not attribute, give the cutover time "
                    "with --new-since-ms",
                    (where,),
                    conv,
                    turn,
                )
            )
        projection = _projection(_metadata_json(metadata))
        meta_runtime = projection[0]
        findings.extend(
            _columns_agree(
                f"turn {key}",
                (runtime, inference),
                projection,
                "metadata",
                (where, conv, turn),
            )
        )
        seen = turns.get((conv, session, turn))
        if seen is not None:
            for name, column, values in (
                ("runtime_key", runtime, seen.runtimes),
                ("inference_id", inference, seen.inferences),
            ):
                first = next(iter(values.items()), None)
                if first is not None and column and column != first[0]:
                    findings.append(
                        Finding(
                            "never-rewritten",
                            f"turn {key} now says {name} {column!r}; its first snapshot "
                            f"recorded {first[0]!r}",
                            (where, f"turn_snapshots {first[1]}"),
                            conv,
                            turn,
                        )
                    )
        pointer = pointers.get(conv)
        if pointer and runtime == pointer and meta_runtime and meta_runtime != pointer:
            findings.append(
                Finding(
                    "pointer-not-history",
                    f"turn {key} holds its conversation's pointer {pointer!r} while its own "
                    f"metadata names {meta_runtime!r}: the pointer was written as history",
                    (where, f"conversation {conv}"),
                    conv,
                    turn,
                )
            )
    findings += _content_findings(stored, turn_runtimes)
    for check in FROM_SNAPSHOTS.values():
        findings += [
            Finding(v.invariant, v.message, _snapshot_evidence(v.message), v.conv_id, v.turn_id)
            for v in check(stored)
        ]
    order = list(DB_INVARIANTS)
    findings.sort(key=lambda f: order.index(f.invariant))
    return findings, [n for n in order if n in judged], not_judged


def _content_findings(stored: list[TurnSnapshot], turn_runtimes: dict[str, str]) -> list[Finding]:
    """The checkers of what a snapshot holds (sim.scenario.content_invariants), on the
    stored snapshots; a block's inference is judged against its turn row's runtime."""
    started = [
        {"event": "inference.started", "inference_id": i, "runtime_key": r, "seq": 0}
        for i, r in turn_runtimes.items()
    ]
    state = RunState(started, stored, [], [], ProfileRegistry([]))
    out = []
    for name in CONTENT_FROM_A_DATABASE:
        for v in CONTENT_CHECKERS[name](state):
            evidence = _snapshot_evidence(v.message)
            out.append(Finding(v.invariant, v.message, evidence, v.conv_id, v.turn_id))
    return out


def _snapshot_evidence(message: str) -> tuple[str, ...]:
    """The snapshot rows a finding's message names (its primary keys)."""
    ids = tuple(dict.fromkeys(re.findall(r"snapshot (\d+)", message)))
    return tuple(f"turn_snapshots {i}" for i in ids) or ("turn_snapshots",)


def _tables_sqlite(conn: Any) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def check_sqlite(path: str | os.PathLike[str], *, new_since_ms: int = 0) -> CheckReport:
    """The checks on a SQLite file of either layout, read-only."""
    source = os.fspath(path)
    if not Path(source).is_file():
        raise CheckInputError(f"{source}: no such file")
    try:
        conn = connect(source, read_only=True)
    except StoreError as exc:
        raise CheckInputError(str(exc)) from None
    try:
        tables = _tables_sqlite(conn)
        layout = layout_of(tables)
        if layout is None or "turns" not in tables:
            raise CheckInputError(
                f"{source}: holds no turns table of turnsim's or the real server's layout"
            )
        pointer = None
        if "conversations" in tables:
            pointer = ("conversations", "current_runtime_key")
        elif "timeline_conversations" in tables:
            pointer = ("timeline_conversations", "runtime_key")
        try:
            findings, judged, not_judged = judge(
                lambda sql: conn.execute(sql), tables, pointer, new_since_ms
            )
        except Exception as exc:  # sqlite3.Error: a column this needs is missing
            raise CheckInputError(
                f"{source}: cannot read it ({exc}); run `turnsim db migrate {source}` first"
            ) from None
    finally:
        conn.close()
    return CheckReport(source, layout.name, tuple(judged), tuple(findings), tuple(not_judged))


def check_server(dsn: str, *, new_since_ms: int = 0) -> CheckReport:
    """The checks on the turnsim tables a server DSN names, read-only."""
    try:
        spec = StoreSpec.parse(dsn)
        dialect, namespace = spec.server()
    except StoreSpecError as exc:
        raise CheckInputError(str(exc)) from None
    label = dialect.describe(namespace)
    try:
        conn = dialect.connect(namespace, read_only=True)
    except Exception as exc:
        error = dialect.error(exc, f"{label}: cannot connect")
        raise CheckInputError(str(error or exc)) from None
    try:
        with conn.cursor() as cur:
            tables = {"turns", "turn_snapshots", "conversations"} - set(dialect.missing_tables(cur))
            if "turns" not in tables:
                raise CheckInputError(f"{label}: holds no turnsim tables")

            def rows(sql: str) -> list[tuple[Any, ...]]:
                cur.execute(sql)
                return list(cur.fetchall())

            pointer = (
                ("conversations", "current_runtime_key") if "conversations" in tables else None
            )
            findings, judged, not_judged = judge(rows, tables, pointer, new_since_ms)
    finally:
        conn.close()
    return CheckReport(spec.label, "turnsim", tuple(judged), tuple(findings), tuple(not_judged))
