"""The typed client: tolerant of extra fields, strict on missing ones, true to the OpenAPI."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import attrs
import httpx
import pytest

from persisters.memory_store import MemoryTurnStore
from persisters.model import FINAL, POST_TOOLS
from sim.api import client
from sim.api.app import create_app
from sim.api.client import (
    ApiError,
    Conversation,
    ConversationDetail,
    DebugClient,
    ResponseShapeError,
    RuntimeSpan,
    TurnDetail,
    TurnList,
    decode,
)
from sim.api.openapi import OPENAPI
from tests.api.api_fixtures import INVENTORY, PLANNER, T0, UNDECODABLE, payload, write_story

TURN_DETAIL: dict[str, Any] = {
    "conv_id": "c1",
    "session_id": "s1",
    "turn_id": "t1",
    "runtime_key": INVENTORY,
    "inference_id": "i1",
    "items": [
        {
            "phase": FINAL,
            "created_at_ms": 5,
            "runtime_key": INVENTORY,
            "inference_id": "i1",
            "payload": "{}",
            "parsed": {},
            "parse_error": None,
        },
        {
            "phase": POST_TOOLS,
            "created_at_ms": 4,
            "runtime_key": INVENTORY,
            "inference_id": "i1",
            "payload": "{",
            "parsed": None,
            "parse_error": "payload is not valid JSON",
        },
    ],
}


def test_decode_builds_nested_frozen_models() -> None:
    turn = decode(TurnDetail, TURN_DETAIL)
    assert turn.items[0].parsed == {}
    assert turn.items[1].parse_error == "payload is not valid JSON"
    assert isinstance(turn.items, tuple)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        turn.runtime_key = PLANNER  # type: ignore[misc]


def test_decode_ignores_unknown_fields() -> None:
    data = copy.deepcopy(TURN_DETAIL)
    data["served_by"] = "a newer server"
    data["items"][1]["tokens"] = [1, 2]
    assert decode(TurnDetail, data) == decode(TurnDetail, TURN_DETAIL)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (("runtime_key",), "runtime_key: required field is missing"),
        (("items", 1, "inference_id"), "items[1].inference_id: required field is missing"),
        # Nullable is not optional: parse_error must be present even when null.
        (("items", 0, "parse_error"), "items[0].parse_error: required field is missing"),
    ],
)
def test_decode_refuses_a_missing_required_field(path: tuple[Any, ...], message: str) -> None:
    data = copy.deepcopy(TURN_DETAIL)
    target = data
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    with pytest.raises(ResponseShapeError) as caught:
        decode(TurnDetail, data)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            ("items", 0, "created_at_ms"),
            "5",
            "items[0].created_at_ms: expected an integer, got str",
        ),
        (
            ("items", 0, "created_at_ms"),
            True,
            "items[0].created_at_ms: expected an integer, got bool",
        ),
        (
            ("items", 0, "created_at_ms"),
            5.0,
            "items[0].created_at_ms: expected an integer, got float",
        ),
        (("runtime_key",), None, "runtime_key: expected a string, got null"),
        (("items", 1, "parse_error"), 3, "items[1].parse_error: expected a string, got int"),
        (("items",), {}, "items: expected an array, got dict"),
        (("items", 0), "final", "items[0]: expected an object, got str"),
    ],
)
def test_decode_refuses_a_mistyped_field(path: tuple[Any, ...], value: Any, message: str) -> None:
    data = copy.deepcopy(TURN_DETAIL)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ResponseShapeError) as caught:
        decode(TurnDetail, data)
    assert str(caught.value) == message


def test_decode_refuses_a_non_object_body() -> None:
    with pytest.raises(ResponseShapeError, match=r"^response: expected an object, got list$"):
        decode(TurnList, [])


# OpenAPI component schema -> the client model that parses it.
SCHEMA_MODELS = {
    "Error": client.Error,
    "Conversation": client.Conversation,
    "ConversationList": client.ConversationList,
    "RuntimeSpan": client.RuntimeSpan,
    "ConversationDetail": client.ConversationDetail,
    "TurnSnapshot": client.TurnItem,
    "TurnList": client.TurnList,
    "TurnPhase": client.TurnPhase,
    "TurnDetail": client.TurnDetail,
}


def test_every_openapi_schema_has_a_client_model_with_the_same_fields() -> None:
    schemas = {k: v for k, v in OPENAPI["components"]["schemas"].items() if k != "OpenAPI"}
    assert set(schemas) == set(SCHEMA_MODELS)
    assert set(SCHEMA_MODELS.values()) == set(client.MODELS)
    for name, model in SCHEMA_MODELS.items():
        fields = [f.name for f in attrs.fields(model)]
        assert sorted(schemas[name]["properties"]) == sorted(fields), name
        assert sorted(schemas[name]["required"]) == sorted(client.required_fields(model)), name


@pytest.fixture
async def api() -> AsyncIterator[DebugClient]:
    store = MemoryTurnStore()
    await write_story(store)
    await store.conversations.set_current_runtime("c é?#&", "s 1", INVENTORY, "inventory", T0)
    await store.save(
        "c é?#&", "s 1", "t%2F", FINAL, T0, payload("t%2F", "s 1", "odd", INVENTORY, FINAL)
    )
    transport = httpx.ASGITransport(app=create_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield DebugClient(http)


@pytest.mark.anyio
async def test_client_reads_every_endpoint(api: DebugClient) -> None:
    listed = {c.conv_id: c for c in (await api.conversations()).items}
    assert listed["c1"] == Conversation("c1", "s1", PLANNER, 2, T0 + 130)
    assert await api.conversation("c1") == ConversationDetail(
        conv_id="c1",
        session_id="s1",
        current_runtime_key=PLANNER,
        turn_count=2,
        last_activity_ms=T0 + 130,
        runtime_history=(
            RuntimeSpan(INVENTORY, "c1-t1", "c1-t1", 1),
            RuntimeSpan(PLANNER, "c1-t2", "c1-t2", 1),
        ),
    )
    turns = await api.turns(conv_id="c1", runtime_key=INVENTORY, limit=2)
    assert [(t.turn_id, t.phase, t.runtime_key) for t in turns.items] == [
        ("c1-t1", "final", INVENTORY),
        ("c1-t1", "post_inference", INVENTORY),
    ]
    assert (await api.turns(since_ms=T0 + 1040)).items[0].turn_id == "c2-t4"
    turn = await api.turn("c1", "s1", "c1-t2")
    assert [(i.phase, i.runtime_key, i.parse_error is None) for i in turn.items] == [
        ("pre_inference", PLANNER, True),
        ("post_inference", PLANNER, True),
        ("post_tools", PLANNER, False),
        ("final", PLANNER, True),
    ]
    assert turn.items[2].payload == UNDECODABLE
    assert (await api.openapi())["openapi"] == "3.1.0"


@pytest.mark.anyio
async def test_client_encodes_ids_as_path_segments(api: DebugClient) -> None:
    turn = await api.turn("c é?#&", "s 1", "t%2F")
    assert (turn.conv_id, turn.session_id, turn.turn_id, turn.inference_id) == (
        "c é?#&",
        "s 1",
        "t%2F",
        "odd",
    )
    assert (await api.conversation("c é?#&")).turn_count == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("call", "status", "fragment"),
    [
        (lambda api: api.conversation("nope"), 404, "unknown conversation 'nope'"),
        (lambda api: api.turn("c1", "s1", "nope"), 404, "unknown turn"),
        (lambda api: api.turns(limit=0), 400, "limit must be an integer from 1 to 1000"),
        (lambda api: api.turns(since_ms=-1), 400, "since_ms"),
        (lambda api: api.turns(phase="done"), 400, "phase must be one of"),
    ],
)
async def test_client_raises_api_errors(
    api: DebugClient, call: Any, status: int, fragment: str
) -> None:
    with pytest.raises(ApiError) as caught:
        await call(api)
    assert caught.value.status == status
    assert fragment in caught.value.message
