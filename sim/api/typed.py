"""Stored values in the types the OpenAPI document promises, or the row reported as damaged.

A database written by another program can hold anything in any column: a BLOB where
text belongs, text or a float or a negative number in a timestamp, a phase no snapshot
has. The debug API never answers 500 for that and never serves a value against its
declared type: each row read is passed through one of the ``typed_*`` functions here,
which returns the row with every value in its type (a BLOB holding UTF-8 text is that
text; an integral float is that integer) or None when a value cannot be (:class:`Damaged`
says which column and why). The API leaves a damaged row out, logs ``http.damaged_rows``
with the count and the first reason, and ``turnsim db doctor`` counts such rows
(``stored_types``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import attrs
import structlog

from persisters.model import PHASES, ConversationRecord, TurnRecord, TurnSnapshot
from sim.api.views import ITEM_FIELDS

INT64_MAX = 2**63 - 1
log = structlog.get_logger("turnsim.api")
R = TypeVar("R")


class Damaged(ValueError):
    """A stored value that cannot be shown in its declared type."""


def as_text(value: Any, column: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise Damaged(f"{column} holds bytes that are not UTF-8 text") from None
    raise Damaged(f"{column} holds {type(value).__name__}, not text")


def as_ms(value: Any, column: str) -> int:
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is int and 0 <= value <= INT64_MAX:
        return value
    shown = f"{value!r}"[:40] if not isinstance(value, bytes) else "a BLOB"
    raise Damaged(f"{column} holds {shown}, not a millisecond count")


def as_phase(value: Any, column: str = "phase") -> str:
    text = as_text(value, column)
    if text not in PHASES:
        raise Damaged(f"{column} holds {text[:40]!r}, not a phase")
    return text


#: The ``/turns`` item fields (``sim.api.views.ITEM_FIELDS`` order) and their types.
_ITEM_TYPES = (as_text, as_text, as_text, as_phase, as_text, as_text, as_ms, as_text)


def typed_item(row: Sequence[Any]) -> tuple[Any, ...]:
    """A ``/turns`` page row (item fields first) in its types; raises :class:`Damaged`."""
    return tuple(f(v, n) for f, v, n in zip(_ITEM_TYPES, row, ITEM_FIELDS, strict=False))


def typed_snapshot(s: TurnSnapshot) -> TurnSnapshot:
    return attrs.evolve(
        s,
        conv_id=as_text(s.conv_id, "conv_id"),
        session_id=as_text(s.session_id, "session_id"),
        turn_id=as_text(s.turn_id, "turn_id"),
        phase=as_phase(s.phase),
        runtime_key=as_text(s.runtime_key, "runtime_key"),
        inference_id=as_text(s.inference_id, "inference_id"),
        created_at_ms=as_ms(s.created_at_ms, "created_at_ms"),
        payload=as_text(s.payload, "payload"),
    )


def typed_turn(t: TurnRecord) -> TurnRecord:
    return TurnRecord(
        as_text(t.conv_id, "turns.conv_id"),
        as_text(t.session_id, "turns.session_id"),
        as_text(t.turn_id, "turns.turn_id"),
        as_text(t.runtime_key, "turns.runtime_key"),
        as_text(t.inference_id, "turns.inference_id"),
        as_ms(t.created_at_ms, "turns.turn_created_at_ms"),
        as_ms(t.updated_at_ms, "turns.updated_at_ms"),
    )


def typed_conversation(c: ConversationRecord) -> ConversationRecord:
    return ConversationRecord(
        as_text(c.conv_id, "conversations.conv_id"),
        as_text(c.session_id, "conversations.session_id"),
        as_text(c.current_runtime_key, "conversations.current_runtime_key"),
        c.profile_slug if isinstance(c.profile_slug, str) else "",  # not shown by the API
        c.created_at_ms if type(c.created_at_ms) is int else 0,  # not shown by the API
        as_ms(c.last_activity_ms, "conversations.last_activity_ms"),
    )


def keep_sound(rows: Iterable[Any], typed: Any, where: str) -> list[Any]:
    """``typed(row)`` of every row that is sound; damaged ones left out and logged once."""
    kept: list[Any] = []
    damaged = 0
    first = ""
    for row in rows:
        try:
            kept.append(typed(row))
        except Damaged as exc:
            damaged += 1
            first = first or str(exc)
    if damaged:
        log.warning(
            "http.damaged_rows",
            where=where,
            count=damaged,
            first=first,
            note="left out; `turnsim db doctor` lists them (stored_types)",
        )
    return kept
