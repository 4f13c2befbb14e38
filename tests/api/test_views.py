"""What the API shows (``sim.api.views``) without HTTP: the runtime history, decoded payloads,
and the ``/turns`` renderer held to :func:`persisters.model.dumps` for any stored value."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from persisters.model import TurnRecord, TurnSnapshot, dumps
from persisters.readpath import PointerAsHistoryReadPath, ReadPath
from sim.api.views import (
    ITEM_FIELDS,
    decode_payload,
    item_json,
    render_items,
    runtime_history,
    shows_stored_runtime,
)
from tests.api.api_fixtures import T0


def _turn(turn_id: str, runtime_key: str) -> TurnRecord:
    return TurnRecord(
        conv_id="c",
        session_id="s",
        turn_id=turn_id,
        runtime_key=runtime_key,
        inference_id=f"i-{turn_id}",
        created_at_ms=T0,
        updated_at_ms=T0,
    )


def test_runtime_history_groups_consecutive_turns_by_their_own_runtime() -> None:
    turns = [_turn("t1", "a@v1"), _turn("t2", "a@v1"), _turn("t3", "b@v1"), _turn("t4", "a@v1")]
    assert runtime_history(ReadPath(), turns, None) == [
        {"runtime_key": "a@v1", "first_turn_id": "t1", "last_turn_id": "t2", "turn_count": 2},
        {"runtime_key": "b@v1", "first_turn_id": "t3", "last_turn_id": "t3", "turn_count": 1},
        {"runtime_key": "a@v1", "first_turn_id": "t4", "last_turn_id": "t4", "turn_count": 1},
    ]
    assert runtime_history(ReadPath(), [], None) == []


@pytest.mark.parametrize(
    ("payload", "parsed"),
    [('{"id": "t"}', {"id": "t"}), ("[]", []), ('"text"', "text"), ("1.5", 1.5)],
)
def test_a_json_payload_decodes(payload: str, parsed: Any) -> None:
    assert decode_payload(payload) == (parsed, None)


@pytest.mark.parametrize("payload", ["", "{", "NaN", "[-Infinity]", "[" * 100_000])
def test_a_payload_that_is_not_json_says_why(payload: str) -> None:
    parsed, reason = decode_payload(payload)
    assert parsed is None
    assert reason is not None and reason.startswith("payload is not valid JSON: ")


ODD_TEXT = [
    "",
    "plain",
    'quote " and backslash \\',
    "control \x00\x01\x1f\x7f \b\f\n\r\t",
    "non-ASCII é ß 中文 🙂",
    "line separators \u2028\u2029",
    "lone surrogate \ud800 and \udfff",
    '{"id": "t", "blocks": [{"kind": "user", "text": "where is my',
]
ODD_VALUES = [None, 0, -1, 2**63, 1.5, True, *ODD_TEXT]


def row_of(values: list[Any]) -> tuple[Any, ...]:
    return (*values, 7)  # a SQLite row carries snapshot_id after the item fields


@pytest.mark.parametrize("text", ODD_TEXT)
def test_render_items_escapes_as_dumps_does(text: str) -> None:
    values = [text, text, text, text, text, text, T0, text]
    item = dict(zip(ITEM_FIELDS, values, strict=True))
    row = row_of(values)
    assert item_json(row) == dumps(item)
    assert render_items([row, row]) == dumps({"items": [item, item]})


@pytest.mark.parametrize("odd", ODD_VALUES, ids=repr)
@pytest.mark.parametrize("field", ITEM_FIELDS)
def test_an_odd_stored_value_is_encoded_by_dumps(field: str, odd: Any) -> None:
    """NULL, numbers or a bool where text or an integer belongs: exactly what dumps writes."""
    item = {"conv_id": "c", "session_id": "s", "turn_id": "t", "phase": "final"}
    item |= {"runtime_key": "r@v1", "inference_id": "i", "created_at_ms": T0, "payload": "{}"}
    item[field] = odd
    row = row_of([item[f] for f in ITEM_FIELDS])
    assert render_items([row]) == dumps({"items": [item]})


@given(
    st.lists(
        st.tuples(
            *(st.text() for _ in range(6)),
            st.integers(min_value=-(2**64), max_value=2**64),
            st.text(),
        ),
        max_size=5,
    )
)
def test_render_items_is_dumps_for_any_text(rows: list[tuple[Any, ...]]) -> None:
    items = [dict(zip(ITEM_FIELDS, row, strict=True)) for row in rows]
    assert render_items(rows) == dumps({"items": items})


def test_only_the_per_turn_read_path_skips_the_views() -> None:
    class Renamed(ReadPath):
        name = "renamed"  # overrides neither method: still the per-turn rule

    class Rewrites(ReadPath):
        def view(self, snapshot: TurnSnapshot, conversation: Any) -> TurnSnapshot:
            return snapshot

    assert shows_stored_runtime(ReadPath())
    assert shows_stored_runtime(Renamed())
    assert not shows_stored_runtime(PointerAsHistoryReadPath())
    assert not shows_stored_runtime(Rewrites())
