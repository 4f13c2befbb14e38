"""Hypothesis over every endpoint and parameter: never a 500, every 200 true to its schema."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from persisters.model import PHASES, TurnQuery
from sim.api import client
from sim.api.app import create_app
from sim.api.openapi import OPENAPI
from sim.api.params import TurnsParams
from sim.api.ui import PAGES
from tests.api.api_fixtures import STORE_KINDS, T0, response_schema, schema_errors, story_store

pytestmark = pytest.mark.anyio

SQLISH = [
    "' OR '1'='1",
    "c1'; DROP TABLE turns; --",
    '" OR ""="',
    "%",
    "_",
    "*",
    "c1' UNION SELECT payload FROM turn_snapshots --",
    "1; DELETE FROM conversations",
    "\x00",
    "c1\x00'",
]
KNOWN_IDS = ["c1", "c2", "c3", "s1", "s2", "c1-t1", "c1-t2", "c2-t3", "inventory@v1"]
#: Client model parsing each 200, by route template.
MODELS: dict[str, type | None] = {
    "/api/debug/conversations": client.ConversationList,
    "/api/debug/conversations/{conv_id}": client.ConversationDetail,
    "/api/debug/turns": client.TurnList,
    "/api/debug/turn/{conv_id}/{session_id}/{turn_id}": client.TurnDetail,
    "/api/debug/openapi.json": None,
}

text = st.text(max_size=40)
ids = st.one_of(st.sampled_from(KNOWN_IDS), st.sampled_from(SQLISH), text)
valid_values = st.one_of(
    st.sampled_from(KNOWN_IDS),
    st.sampled_from(PHASES),
    st.integers(min_value=1, max_value=1000).map(str),
    st.just(""),
)
invalid_values = st.one_of(
    st.sampled_from(SQLISH),
    text,
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["0", "1001", str(2**63 - 1), str(2**63), str(-(2**63)), "FINAL", "final "]),
    st.floats(allow_nan=True).map(str),
    st.just("9" * 5000),
    # Digits Python's int() would accept: Arabic-Indic, fullwidth, underscores, signs.
    st.sampled_from(["\u0661\u0662", "\uff11\uff12", "1_000", "0x10", "+5", " 5", "5\n"]),
)
values = st.one_of(valid_values, invalid_values)
names = st.one_of(st.sampled_from(TurnsParams.names()), st.text(min_size=1, max_size=12))
queries = st.one_of(st.just([]), st.just([]), st.lists(st.tuples(names, values), max_size=4))
methods = st.one_of(
    st.just("GET"), st.sampled_from(["HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
)
STORED_TURNS = [("c1", "s1", "c1-t1"), ("c1", "s1", "c1-t2"), ("c2", "s2", "c2-t3")]


def segment(value: str) -> str:
    return quote(value, safe="")


paths = st.one_of(
    st.just("/api/debug/conversations"),
    st.builds(lambda c: f"/api/debug/conversations/{segment(c)}", ids),
    st.just("/api/debug/turns"),
    st.builds(
        lambda c, s, t: f"/api/debug/turn/{segment(c)}/{segment(s)}/{segment(t)}", ids, ids, ids
    ),
    st.sampled_from(STORED_TURNS).map(lambda k: "/api/debug/turn/{}/{}/{}".format(*k)),
    st.just("/api/debug/openapi.json"),
    st.builds(lambda t: f"/api/debug/{segment(t)}", text),
    # The web pages over the same reads: never a 500 either.
    st.builds(lambda c: f"/api/debug/ui/conversations/{segment(c)}", ids),
    st.builds(
        lambda c, s, t: f"/api/debug/ui/turn/{segment(c)}/{segment(s)}/{segment(t)}",
        ids,
        ids,
        ids,
    ),
    st.sampled_from(STORED_TURNS).map(lambda k: "/api/debug/ui/turn/{}/{}/{}".format(*k)),
    st.just("/api/debug/docs"),
)


@pytest.fixture(params=STORE_KINDS)
async def http(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    async with story_store(request.param, tmp_path) as store:
        app = create_app(store)
        transport = httpx.ASGITransport(app=app)  # an app exception fails the test
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client_:
            yield client_, app, store


def template_of(app: Any, path: str) -> str | None:
    for route in app.routes:
        if isinstance(route, Route) and route.path_regex.match(path):
            return route.path
    return None


def check_response(app: Any, method: str, query: list[tuple[str, str]], r: httpx.Response) -> None:
    event(f"{method} {template_of(app, r.request.url.path)} -> {r.status_code}")
    assert r.status_code in (200, 307, 400, 404, 405), (r.status_code, r.text[:300])
    if r.status_code == 307:  # Starlette's trailing-slash redirect
        assert r.headers["location"].startswith("http://test/api/debug/")
        return
    if method == "HEAD":
        assert r.content == b""
        return
    if r.status_code != 405 and template_of(app, r.request.url.path) in PAGES:
        assert r.headers["content-type"] == "text/html; charset=utf-8"
        assert r.status_code in (200, 400, 404)
        return
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    template = template_of(app, r.request.url.path)
    if r.status_code != 200:
        assert set(body) == {"error"} and isinstance(body["error"], str)
        if r.status_code == 400:
            given = {n for n, _ in query}
            assert any(n in body["error"] or repr(n) in body["error"] for n in given), body
        if r.status_code == 405:
            assert r.headers["allow"] == "GET, HEAD"
        return
    assert method == "GET" and template is not None
    assert schema_errors(OPENAPI, response_schema(OPENAPI, template, 200), body) == []
    model = MODELS[template]
    if model is not None:
        client.decode(model, body)
    if template == "/api/debug/turns":
        limit = dict(query).get("limit") or "100"
        assert len(body["items"]) <= int(limit)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # the store is only read
)
@given(method=methods, path=paths, query=queries)
async def test_fuzz_every_endpoint(
    http: Any, method: str, path: str, query: list[tuple[str, str]]
) -> None:
    client_, app, _ = http
    response = await client_.request(method, path, params=query)
    check_response(app, method, query, response)


#: Per parameter: values it accepts, values at its edges, and anything at all.
FILTERS = {
    "conv_id": st.sampled_from(["c1", "c2", "c3", ""]),
    "session_id": st.sampled_from(["s1", "s2", ""]),
    "phase": st.sampled_from([*PHASES, "", "FINAL", "final "]),
    "runtime_key": st.sampled_from(["inventory@v1", "planner@v1", ""]),
    "inference_id": st.sampled_from(["inf-c1-1", "inf-c1-2", "inf-c2-3", ""]),
    "since_ms": st.one_of(
        st.integers(min_value=T0, max_value=T0 + 2100),
        st.integers(min_value=-3, max_value=2**63 + 3),
        st.integers(min_value=2**63 - 3, max_value=2**64),
    ).map(str),
    "as_of_ms": st.one_of(
        st.integers(min_value=T0, max_value=T0 + 2100),
        st.integers(min_value=-3, max_value=2**63 + 3),
    ).map(str),
    "limit": st.integers(min_value=-2, max_value=1003).map(str),
}
assert set(FILTERS) == set(TurnsParams.names())
filters = st.fixed_dictionaries(
    {}, optional={name: st.one_of(good, good, values) for name, good in FILTERS.items()}
).map(lambda d: list(d.items()))


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(query=filters)
async def test_fuzz_turn_filters(http: Any, query: list[tuple[str, str]]) -> None:
    client_, app, _ = http
    response = await client_.get("/api/debug/turns", params=query)
    check_response(app, "GET", query, response)


async def test_sql_looking_input_is_only_data(http: Any) -> None:
    client_, _, store = http
    before = await store.list(TurnQuery(limit=1000))
    for value in SQLISH:
        for name in ("conv_id", "session_id", "runtime_key", "inference_id"):
            response = await client_.get("/api/debug/turns", params={name: value})
            assert (response.status_code, response.json()) == (200, {"items": []})
        response = await client_.get(f"/api/debug/conversations/{segment(value)}")
        assert response.status_code == 404
        path = f"/api/debug/turn/c1/s1/{segment(value)}"
        assert (await client_.get(path)).status_code == 404
    assert await store.list(TurnQuery(limit=1000)) == before
    assert [c.conv_id for c in await store.conversations.list()] == ["c1", "c2", "c3"]
