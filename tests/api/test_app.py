"""The app (``sim.api.app``) in process: every endpoint, refusal and log line, on the memory
and SQLite stores, each answer checked against the OpenAPI document."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from persisters.memory_store import MemoryTurnStore
from persisters.model import FINAL, POST_INFERENCE, POST_TOOLS, PRE_INFERENCE, TurnSaveOptions
from persisters.readpath import PointerAsHistoryReadPath
from persisters.store import TurnStore
from sim.api.app import debug_app
from sim.api.openapi import OPENAPI, PREFIX
from tests.api.api_fixtures import (
    INVENTORY,
    PLANNER,
    STORE_KINDS,
    T0,
    UNDECODABLE,
    captured_info_logs,
    checked,
    client_for,
    get_ok,
    payload,
    story_store,
)

pytestmark = pytest.mark.anyio

CONVERSATIONS = "/api/debug/conversations"
CONVERSATION = "/api/debug/conversations/{conv_id}"
TURNS = "/api/debug/turns"
TURN = "/api/debug/turn/{conv_id}/{session_id}/{turn_id}"
OPENAPI_PATH = "/api/debug/openapi.json"

#: Every stored turn of the story and the runtime / inference id it actually ran with.
TRUTH = {
    "c1-t1": (INVENTORY, "inf-c1-1"),
    "c1-t2": (PLANNER, "inf-c1-2"),
    "c2-t1": (INVENTORY, "inf-c2-1"),
    "c2-t2": (INVENTORY, "inf-c2-2"),
    "c2-t3": (PLANNER, "inf-c2-3"),
    "c2-t4": (INVENTORY, "inf-c2-4"),
}


@pytest.fixture(params=STORE_KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TurnStore]:
    async with story_store(request.param, tmp_path) as s:
        yield s


@pytest.fixture
async def http(store: TurnStore) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(store) as client:
        yield client


# --- conversations --------------------------------------------------------------------------


async def test_conversation_list(http: httpx.AsyncClient) -> None:
    body = await get_ok(http, CONVERSATIONS, CONVERSATIONS)
    assert body == {
        "items": [
            {
                "conv_id": "c1",
                "session_id": "s1",
                "current_runtime_key": PLANNER,
                "turn_count": 2,
                "last_activity_ms": T0 + 130,
            },
            {
                "conv_id": "c2",
                "session_id": "s2",
                "current_runtime_key": INVENTORY,
                "turn_count": 4,
                "last_activity_ms": T0 + 1040,
            },
            {
                "conv_id": "c3",
                "session_id": "s3",
                "current_runtime_key": INVENTORY,
                "turn_count": 0,
                "last_activity_ms": T0 + 2000,
            },
        ]
    }


def span(runtime_key: str, first: str, last: str, count: int) -> dict[str, Any]:
    return {
        "runtime_key": runtime_key,
        "first_turn_id": first,
        "last_turn_id": last,
        "turn_count": count,
    }


@pytest.mark.parametrize(
    ("conv_id", "current", "history"),
    [
        # The canonical scenario: the pointer moved to planner, the first turn stays inventory.
        ("c1", PLANNER, [span(INVENTORY, "c1-t1", "c1-t1", 1), span(PLANNER, "c1-t2", "c1-t2", 1)]),
        # Switching back makes a new span: history is a sequence, not a set of runtimes.
        (
            "c2",
            INVENTORY,
            [
                span(INVENTORY, "c2-t1", "c2-t2", 2),
                span(PLANNER, "c2-t3", "c2-t3", 1),
                span(INVENTORY, "c2-t4", "c2-t4", 1),
            ],
        ),
        ("c3", INVENTORY, []),
    ],
)
async def test_runtime_history_follows_the_turns_across_switches(
    http: httpx.AsyncClient, conv_id: str, current: str, history: list[dict[str, Any]]
) -> None:
    body = await get_ok(http, f"{CONVERSATIONS}/{conv_id}", CONVERSATION)
    assert body["current_runtime_key"] == current
    assert body["runtime_history"] == history
    assert body["turn_count"] == sum(s["turn_count"] for s in history)


async def test_conversations_expose_only_current_runtime_key(http: httpx.AsyncClient) -> None:
    listed = (await get_ok(http, CONVERSATIONS, CONVERSATIONS))["items"]
    detail = await get_ok(http, f"{CONVERSATIONS}/c1", CONVERSATION)
    for conversation in [*listed, detail]:
        assert "current_runtime_key" in conversation
        assert "runtime_key" not in conversation


# --- turns ----------------------------------------------------------------------------------


async def test_every_listed_snapshot_carries_its_own_turns_runtime(http: httpx.AsyncClient) -> None:
    items = (await get_ok(http, TURNS, TURNS))["items"]
    assert len(items) == 11
    for item in items:
        assert (item["runtime_key"], item["inference_id"]) == TRUTH[item["turn_id"]], item
    times = [item["created_at_ms"] for item in items]
    assert times == sorted(times, reverse=True)  # newest first
    assert items[-1] == {
        "conv_id": "c1",
        "session_id": "s1",
        "turn_id": "c1-t1",
        "phase": PRE_INFERENCE,
        "runtime_key": INVENTORY,
        "inference_id": "inf-c1-1",
        "created_at_ms": T0 + 10,
        "payload": payload("c1-t1", "s1", "inf-c1-1", INVENTORY, PRE_INFERENCE),
    }


ALL = [
    ("c2-t4", FINAL),
    ("c2-t3", FINAL),
    ("c2-t2", FINAL),
    ("c2-t1", FINAL),
    ("c1-t2", FINAL),
    ("c1-t2", POST_TOOLS),
    ("c1-t2", POST_INFERENCE),
    ("c1-t2", PRE_INFERENCE),
    ("c1-t1", FINAL),
    ("c1-t1", POST_INFERENCE),
    ("c1-t1", PRE_INFERENCE),
]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("conv_id=c1&runtime_key=inventory%40v1", ALL[8:]),
        ("runtime_key=planner%40v1", [ALL[1], *ALL[4:8]]),
        ("conv_id=c2&phase=final", ALL[:4]),
        ("inference_id=inf-c1-1", ALL[8:]),
        ("session_id=s1&phase=post_tools", [ALL[5]]),
        (f"since_ms={T0 + 1030}", ALL[:2]),
        (f"since_ms={T0 + 130}&conv_id=c1", ALL[4:5]),
        ("limit=2", ALL[:2]),
        ("limit=1000", ALL),
        ("conv_id=&session_id=&phase=&since_ms=&limit=", ALL),  # empty = not given
        ("conv_id=nope", []),
        ("runtime_key=' OR '1'='1", []),
    ],
)
async def test_turn_list_filters(
    http: httpx.AsyncClient, query: str, expected: list[tuple[str, str]]
) -> None:
    items = (await get_ok(http, f"{TURNS}?{query}", TURNS))["items"]
    assert [(i["turn_id"], i["phase"]) for i in items] == expected
    for item in items:
        assert (item["runtime_key"], item["inference_id"]) == TRUTH[item["turn_id"]]


async def test_default_limit_is_100() -> None:
    store = MemoryTurnStore()
    body = payload("t", "s", "i", INVENTORY, FINAL)
    for n in range(101):
        await store.save("c", "s", f"t{n}", FINAL, n, body)
    async with client_for(store) as http:
        items = (await get_ok(http, TURNS, TURNS))["items"]
    assert len(items) == 100
    assert items[0]["turn_id"] == "t100"
    assert items[-1]["turn_id"] == "t1"


async def test_turn_detail_items_per_phase(http: httpx.AsyncClient) -> None:
    body = await get_ok(http, "/api/debug/turn/c1/s1/c1-t1", TURN)
    assert {k: body[k] for k in ("conv_id", "session_id", "turn_id")} == {
        "conv_id": "c1",
        "session_id": "s1",
        "turn_id": "c1-t1",
    }
    assert (body["runtime_key"], body["inference_id"]) == (INVENTORY, "inf-c1-1")
    phases = [PRE_INFERENCE, POST_INFERENCE, FINAL]
    assert [i["phase"] for i in body["items"]] == phases
    assert [i["created_at_ms"] for i in body["items"]] == [T0 + 10, T0 + 20, T0 + 30]
    for item, phase in zip(body["items"], phases, strict=True):
        assert (item["runtime_key"], item["inference_id"]) == (INVENTORY, "inf-c1-1")
        assert item["payload"] == payload("c1-t1", "s1", "inf-c1-1", INVENTORY, phase)
        assert item["parsed"] == json.loads(item["payload"])
        assert item["parsed"]["metadata"]["geppetto.runtime@v1"] == INVENTORY
        assert item["parse_error"] is None


async def test_turn_detail_reports_an_undecodable_payload(http: httpx.AsyncClient) -> None:
    body = await get_ok(http, "/api/debug/turn/c1/s1/c1-t2", TURN)
    assert (body["runtime_key"], body["inference_id"]) == (PLANNER, "inf-c1-2")
    items = body["items"]
    assert [i["phase"] for i in items] == [PRE_INFERENCE, POST_INFERENCE, POST_TOOLS, FINAL]
    assert {(i["runtime_key"], i["inference_id"]) for i in items} == {(PLANNER, "inf-c1-2")}
    broken = items[2]
    assert broken["payload"] == UNDECODABLE
    assert broken["parsed"] is None
    assert broken["parse_error"].startswith("payload is not valid JSON")
    assert all(i["parse_error"] is None and i["parsed"] for i in items if i is not broken)


@pytest.mark.parametrize("text", ["NaN", '{"x": Infinity}', "[" * 100_000])
async def test_payloads_python_would_misread_are_parse_errors(text: str) -> None:
    store = MemoryTurnStore()
    await store.save("c", "s", "t", FINAL, 1, text, TurnSaveOptions(runtime_key=INVENTORY))
    async with client_for(store) as http:
        body = await get_ok(http, "/api/debug/turn/c/s/t", TURN)
    assert body["items"][0]["parsed"] is None
    assert body["items"][0]["parse_error"].startswith("payload is not valid JSON")


async def test_turn_detail_finds_a_turn_behind_many_newer_snapshots() -> None:
    # The real endpoint searched only the newest 500 snapshots of the session.
    store = MemoryTurnStore()
    for n in range(600):
        body = payload(f"t{n}", "s", f"i{n}", INVENTORY, FINAL)
        await store.save("c", "s", f"t{n}", FINAL, n, body)
    async with client_for(store) as http:
        body = await get_ok(http, "/api/debug/turn/c/s/t0", TURN)
    assert [(i["phase"], i["inference_id"]) for i in body["items"]] == [(FINAL, "i0")]


# --- the pointer-as-history variant ---------------------------------------------------------


async def test_pointer_as_history_variant_reproduces_the_old_responses(store: TurnStore) -> None:
    async with client_for(store, PointerAsHistoryReadPath()) as http:
        detail = await get_ok(http, f"{CONVERSATIONS}/c1", CONVERSATION)
        listed = (await get_ok(http, f"{TURNS}?conv_id=c1", TURNS))["items"]
        turn = await get_ok(http, "/api/debug/turn/c1/s1/c1-t1", TURN)
    # Every turn seems to come from the latest runtime: exactly the old bug.
    assert detail["runtime_history"] == [span(PLANNER, "c1-t1", "c1-t2", 2)]
    assert {i["runtime_key"] for i in listed} == {PLANNER}
    assert turn["runtime_key"] == PLANNER
    assert {i["runtime_key"] for i in turn["items"]} == {PLANNER}


# --- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "parameter"),
    [
        (f"{TURNS}?limit=abc", "limit"),
        (f"{TURNS}?limit=0", "limit"),
        (f"{TURNS}?limit=1001", "limit"),
        (f"{TURNS}?limit=-5", "limit"),
        (f"{TURNS}?limit=1.5", "limit"),
        (f"{TURNS}?limit=1e3", "limit"),
        (f"{TURNS}?limit=%201", "limit"),
        (f"{TURNS}?limit=%D9%A1", "limit"),  # an Arabic-Indic digit one
        (f"{TURNS}?limit={'9' * 30}", "limit"),
        (f"{TURNS}?since_ms=-1", "since_ms"),
        (f"{TURNS}?since_ms=9223372036854775808", "since_ms"),
        (f"{TURNS}?since_ms=yesterday", "since_ms"),
        (f"{TURNS}?phase=bogus", "phase"),
        (f"{TURNS}?phase=FINAL", "phase"),
        (f"{TURNS}?colour=red", "colour"),
        (f"{TURNS}?limit=1&limit=2", "limit"),
        (f"{CONVERSATIONS}?limit=1", "limit"),
        (f"{CONVERSATIONS}/c1?since_ms=0", "since_ms"),
        ("/api/debug/turn/c1/s1/c1-t1?phase=final", "phase"),
        (f"{OPENAPI_PATH}?v=2", "v"),
    ],
)
async def test_bad_parameters_are_400_naming_the_parameter(
    http: httpx.AsyncClient, url: str, parameter: str
) -> None:
    response = await http.get(url)
    assert response.status_code == 400
    template = next(t for t in OPENAPI["paths"] if _matches(t, response.request.url.path))
    body = checked(response, template)
    assert parameter in body["error"]


@pytest.mark.parametrize(
    "query", ["limit=1", "limit=1000", "since_ms=0", "since_ms=9223372036854775807", "phase=final"]
)
async def test_parameter_edges_are_accepted(http: httpx.AsyncClient, query: str) -> None:
    await get_ok(http, f"{TURNS}?{query}", TURNS)


async def test_leading_zeros_are_still_decimal(http: httpx.AsyncClient) -> None:
    items = (await get_ok(http, f"{TURNS}?limit={'0' * 30}3", TURNS))["items"]
    assert len(items) == 3


@pytest.mark.parametrize(
    ("url", "template"),
    [
        (f"{CONVERSATIONS}/nope", CONVERSATION),
        ("/api/debug/turn/c1/s1/nope", TURN),
        ("/api/debug/turn/c1/s2/c1-t1", TURN),  # right turn id, wrong session
        ("/api/debug/turn/c2/s1/c1-t1", TURN),  # right turn id, wrong conversation
        ("/api/debug/turn/c1/s1", None),
        ("/api/debug/nope", None),
        ("/api/debug/ui/nope", None),
    ],
)
async def test_unknown_ids_and_paths_are_404(
    http: httpx.AsyncClient, url: str, template: str | None
) -> None:
    response = await http.get(url)
    assert response.status_code == 404
    if template is not None:
        checked(response, template)
    assert set(response.json()) == {"error"}


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize(
    "url",
    [
        CONVERSATIONS,
        f"{CONVERSATIONS}/c1",
        TURNS,
        "/api/debug/turn/c1/s1/c1-t1",
        OPENAPI_PATH,
    ],
)
async def test_other_methods_are_405(http: httpx.AsyncClient, method: str, url: str) -> None:
    response = await http.request(method, url)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    template = next(t for t in OPENAPI["paths"] if _matches(t, url))
    assert checked(response, template) == {"error": f"method {method} not allowed; use GET"}


async def test_head_is_get_without_a_body(http: httpx.AsyncClient) -> None:
    response = await http.head(TURNS)
    assert response.status_code == 200
    assert response.content == b""


# --- logging ---------------------------------------------------------------------------------


async def test_requests_are_logged_through_structlog(http: httpx.AsyncClient) -> None:
    with captured_info_logs() as events:
        await http.get(f"{TURNS}?limit=2")
        await http.get(f"{TURNS}?limit=0")
        await http.post(TURNS)
    requests = [e for e in events if e["event"] == "http.request"]
    assert [(e["method"], e["path"], e["query"], e["status"]) for e in requests] == [
        ("GET", TURNS, "limit=2", 200),
        ("GET", TURNS, "limit=0", 400),
        ("POST", TURNS, "", 405),
    ]
    assert all(e["duration_ms"] >= 0 and e["log_level"] == "info" for e in requests)


def _matches(template: str, path: str) -> bool:
    return re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path) is not None


# --- the app around other routes ------------------------------------------------------------


async def test_debug_app_keeps_the_api_error_handling() -> None:
    """The bench's floor server is the API's stack: JSON 404/405 and the request log."""

    async def fixed(request: Request) -> Response:
        return Response(b'{"items":[]}', media_type="application/json")

    app = debug_app([Route(f"{PREFIX}/turns", fixed, methods=["GET"])])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as http:
        assert (await http.get(TURNS)).json() == {"items": []}
        missing = await http.get("/api/debug/nope")
        assert (missing.status_code, missing.json()) == (
            404,
            {"error": "no such endpoint '/api/debug/nope'"},
        )
        refused = await http.post(TURNS)
        assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"


# --- point in time (as_of_ms) ---------------------------------------------------------------


async def test_as_of_ms_shows_the_store_as_it_was(http: httpx.AsyncClient) -> None:
    items = (await get_ok(http, f"{TURNS}?conv_id=c1&as_of_ms={T0 + 20}", TURNS))["items"]
    assert [(i["turn_id"], i["phase"]) for i in items] == [
        ("c1-t1", POST_INFERENCE),
        ("c1-t1", PRE_INFERENCE),
    ]
    body = await get_ok(http, f"{CONVERSATIONS}/c1?as_of_ms={T0 + 50}", CONVERSATION)
    assert body["turn_count"] == 1
    assert [s["runtime_key"] for s in body["runtime_history"]] == [INVENTORY]
    now = await get_ok(http, f"{CONVERSATIONS}/c1", CONVERSATION)
    assert [s["runtime_key"] for s in now["runtime_history"]] == [INVENTORY, PLANNER]
    turn = await get_ok(http, f"/api/debug/turn/c1/s1/c1-t1?as_of_ms={T0 + 15}", TURN)
    assert [i["phase"] for i in turn["items"]] == [PRE_INFERENCE]
    assert turn["runtime_key"] == INVENTORY
    later = await http.get(f"/api/debug/turn/c1/s1/c1-t2?as_of_ms={T0 + 50}")
    assert later.status_code == 404  # not saved yet at that time


@pytest.mark.parametrize(
    "url",
    [
        f"{TURNS}?as_of_ms=-1",
        f"{CONVERSATIONS}/c1?as_of_ms=soon",
        "/api/debug/turn/c1/s1/c1-t1?as_of_ms=1&as_of_ms=2",
    ],
)
async def test_a_bad_as_of_ms_is_400(http: httpx.AsyncClient, url: str) -> None:
    response = await http.get(url)
    assert response.status_code == 400 and "as_of_ms" in response.json()["error"]
