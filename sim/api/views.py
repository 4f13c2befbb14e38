"""What the debug API shows: conversations, turns and snapshots as JSON values or text.

What a caller may rely on:

* A turn's runtime is decided by the :class:`~persisters.readpath.ReadPath` (rule 2: the
  runtime stored with the turn); :func:`runtime_history` groups turns by it, never by the
  conversation's pointer.
* :func:`render_items` writes exactly the text :func:`persisters.model.dumps` would write for
  ``{"items": [...]}`` (keys sorted, compact), straight from rows, for any stored value.
* Nothing here knows HTTP or reads a store: values in, JSON-ready values out.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterable, Sequence
from json.encoder import encode_basestring
from typing import Any

from persisters.model import FINAL, ConversationRecord, TurnRecord, TurnSnapshot, dumps
from persisters.readpath import ReadPath


def shows_stored_runtime(read_path: ReadPath) -> bool:
    """Whether ``read_path`` shows every snapshot exactly as stored.

    True for :class:`ReadPath` itself (the per-turn rule) and for subclasses that override
    neither of its methods: such a path never looks at the conversation record and its
    ``view`` returns the snapshot unchanged, so a report needs neither.
    """
    kind = type(read_path)
    return kind.view is ReadPath.view and kind.snapshot_runtime is ReadPath.snapshot_runtime


def turn_runtime(
    read_path: ReadPath, turn: TurnRecord, conversation: ConversationRecord | None
) -> str:
    """The runtime a report shows for a turn row, decided by the read path."""
    # ReadPath decides per snapshot; a turn row is presented to it as its final snapshot.
    probe = TurnSnapshot(
        conv_id=turn.conv_id,
        session_id=turn.session_id,
        turn_id=turn.turn_id,
        phase=FINAL,
        runtime_key=turn.runtime_key,
        inference_id=turn.inference_id,
        created_at_ms=turn.updated_at_ms,
        payload="",
    )
    return read_path.snapshot_runtime(probe, conversation)


def runtime_history(
    read_path: ReadPath, turns: Sequence[TurnRecord], conversation: ConversationRecord | None
) -> list[dict[str, Any]]:
    """Consecutive turns (oldest first) grouped by the runtime each actually used."""
    spans: list[dict[str, Any]] = []
    for turn in turns:
        runtime = turn_runtime(read_path, turn, conversation)
        if spans and spans[-1]["runtime_key"] == runtime:
            spans[-1]["last_turn_id"] = turn.turn_id
            spans[-1]["turn_count"] += 1
        else:
            spans.append(
                {
                    "runtime_key": runtime,
                    "first_turn_id": turn.turn_id,
                    "last_turn_id": turn.turn_id,
                    "turn_count": 1,
                }
            )
    return spans


def conversation_json(record: ConversationRecord, turn_count: int) -> dict[str, Any]:
    """A conversation of ``/conversations``: its pointer only as ``current_runtime_key``."""
    return {
        "conv_id": record.conv_id,
        "session_id": record.session_id,
        "current_runtime_key": record.current_runtime_key,
        "turn_count": turn_count,
        "last_activity_ms": record.last_activity_ms,
    }


def decode_payload(payload: str) -> tuple[Any, str | None]:
    """``(parsed, None)`` when the payload is JSON, else ``(None, reason)``."""

    def refuse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(payload, parse_constant=refuse_constant), None
    except ValueError as exc:
        return None, f"payload is not valid JSON: {exc}"
    except RecursionError:
        return None, "payload is not valid JSON: nested too deeply"


def phase_json(snapshot: TurnSnapshot) -> dict[str, Any]:
    """One item of ``/turn/...``: the snapshot with its payload decoded (or why it is not)."""
    parsed, parse_error = decode_payload(snapshot.payload)
    return {
        "phase": snapshot.phase,
        "created_at_ms": snapshot.created_at_ms,
        "runtime_key": snapshot.runtime_key,
        "inference_id": snapshot.inference_id,
        "payload": snapshot.payload,
        "parsed": parsed,
        "parse_error": parse_error,
    }


# --- GET /turns: items rendered straight from rows to JSON text ------------------------------

#: The fields of a ``/turns`` item in :class:`TurnSnapshot` order. A page row holds these
#: first (a SQLite row carries ``snapshot_id`` after them).
ITEM_FIELDS = (
    "conv_id",
    "session_id",
    "turn_id",
    "phase",
    "runtime_key",
    "inference_id",
    "created_at_ms",
    "payload",
)
#: A snapshot as a page row (:data:`ITEM_FIELDS`, in order).
item_row = operator.attrgetter(*ITEM_FIELDS)
#: One item exactly as :func:`persisters.model.dumps` writes it: keys sorted, compact.
_ITEM_JSON = (
    '{"conv_id":%s,"created_at_ms":%d,"inference_id":%s,"payload":%s,"phase":%s,'
    '"runtime_key":%s,"session_id":%s,"turn_id":%s}'
)


def item_json(row: Sequence[Any]) -> str:
    """``dumps`` of one ``/turns`` item given as a row, without building the dict.

    Stored values (text, an integer ``created_at_ms``) take the template, escaped by the
    very function ``dumps`` escapes strings with; anything else (a database written by
    another tool may hold NULL or numbers) goes through ``dumps`` itself.
    """
    conv_id, session_id, turn_id, phase, runtime_key, inference_id, created, payload = row[:8]
    if type(created) is int:
        q = encode_basestring
        try:
            return _ITEM_JSON % (
                q(conv_id),
                created,
                q(inference_id),
                q(payload),
                q(phase),
                q(runtime_key),
                q(session_id),
                q(turn_id),
            )
        except TypeError:  # a value that is not text
            pass
    return dumps(dict(zip(ITEM_FIELDS, row, strict=False)))


def render_items(rows: Iterable[Sequence[Any]]) -> str:
    """``dumps({"items": [...]})`` of page rows: the same text, without dicts in between."""
    return '{"items":[' + ",".join([item_json(row) for row in rows]) + "]}"
