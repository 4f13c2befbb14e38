"""The OpenAPI document (``sim.api.openapi``): served as is, and describing exactly the app's
routes and parameters. Every answer in ``test_app.py`` is checked against its schemas, and
``test_client.py`` holds the typed client's models to them."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from persisters.model import dumps
from persisters.store import TurnStore
from sim.api.app import create_app
from sim.api.openapi import OPENAPI, PREFIX
from sim.api.params import TurnsParams
from sim.api.ui import PAGES
from tests.api.api_fixtures import STORE_KINDS, client_for, get_ok, story_store

pytestmark = pytest.mark.anyio

TURNS = "/api/debug/turns"
OPENAPI_PATH = "/api/debug/openapi.json"


@pytest.fixture(params=STORE_KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TurnStore]:
    async with story_store(request.param, tmp_path) as s:
        yield s


@pytest.fixture
async def http(store: TurnStore) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(store) as client:
        yield client


async def test_openapi_document_describes_the_app(http: httpx.AsyncClient, store: Any) -> None:
    served = await get_ok(http, OPENAPI_PATH, OPENAPI_PATH)
    assert served == json.loads(dumps(OPENAPI))
    app = create_app(store)
    # The web pages (sim.api.ui.PAGES) are for people and are not API, as in FastAPI.
    routes = {
        route.path: route.methods  # type: ignore[attr-defined]
        for route in app.routes
        if route.path not in PAGES  # type: ignore[attr-defined]
    }
    assert set(routes) == set(OPENAPI["paths"])
    assert {route.path for route in app.routes} == {*OPENAPI["paths"], *PAGES}  # type: ignore[attr-defined]
    for template, item in OPENAPI["paths"].items():
        assert set(item) == {"get"} and routes[template] == {"GET", "HEAD"}
        parameters = item["get"]["parameters"]
        in_path = [p["name"] for p in parameters if p["in"] == "path"]
        assert in_path == re.findall(r"\{([^}]+)\}", template)
        in_query = [p["name"] for p in parameters if p["in"] == "query"]
        if template == TURNS:
            assert in_query == list(TurnsParams.names())
        elif template.startswith((f"{PREFIX}/conversations/", f"{PREFIX}/turn/")):
            assert in_query == ["as_of_ms"]  # the one parameter of the per-item reads
        else:
            assert in_query == []
        assert set(item["get"]["responses"]) >= {"200", "400", "405"}
    limit = next(p for p in OPENAPI["paths"][TURNS]["get"]["parameters"] if p["name"] == "limit")
    assert (limit["schema"]["default"], limit["schema"]["maximum"]) == (TurnsParams().limit, 1000)
