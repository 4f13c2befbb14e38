"""The web pages (``sim.api.ui``) in process: what each page shows, read from the story.

The pages are parsed with the standard library's HTML parser; ``test_browser.py`` drives
the same pages in a real browser.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from persisters.memory_store import MemoryTurnStore
from persisters.model import FINAL, PRE_INFERENCE
from persisters.readpath import PointerAsHistoryReadPath
from persisters.store import TurnStore, new_value_wins
from sim.api import ui
from sim.colours import runtime_colours
from tests.api.api_fixtures import (
    INVENTORY,
    PLANNER,
    STORE_KINDS,
    T0,
    client_for,
    payload,
    story_store,
    write_story,
)

pytestmark = pytest.mark.anyio

INDEX = "/api/debug/"
BLUE, ORANGE = runtime_colours([INVENTORY, PLANNER]).values()


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text inside each element by id."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text_by_id: dict[str, str] = {}
        self._open: list[str | None] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.tags.append((tag, values))
        self.handle_data(" ")  # cells and lines read as separate words
        if tag not in ("meta", "link", "br", "img", "input"):
            self._open.append(values.get("id"))
            if values.get("id"):
                self.text_by_id[values["id"]] = ""

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for element_id in self._open:
            if element_id:
                self.text_by_id[element_id] += data

    def with_class(self, name: str) -> list[dict[str, str]]:
        return [a for _, a in self.tags if name in a.get("class", "").split()]

    def links(self) -> list[str]:
        return [a["href"] for tag, a in self.tags if tag == "a" and "href" in a]

    def text(self, element_id: str) -> str:
        return " ".join(self.text_by_id[element_id].split())


@pytest.fixture(params=STORE_KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TurnStore]:
    async with story_store(request.param, tmp_path) as s:
        yield s


@pytest.fixture
async def http(store: TurnStore) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(store) as client:
        yield client


async def page(http: httpx.AsyncClient, url: str, status: int = 200) -> Elements:
    response = await http.get(url)
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    return Elements(response.text)


def style_of(colour: str) -> str:
    return f"background:{colour};color:#000000"


# --- the index ------------------------------------------------------------------------------


async def test_root_redirects_to_the_index(http: httpx.AsyncClient) -> None:
    response = await http.get("/")
    assert (response.status_code, response.headers["location"]) == (307, INDEX)


async def test_index_lists_conversations_with_pointer_turns_and_activity(
    http: httpx.AsyncClient,
) -> None:
    html = await page(http, INDEX)
    rows = html.text("conversations")
    assert rows.startswith("conversation session current pointer turns last activity")
    assert "c1 s1 planner@v1 2 2023-11-14 22:13:20.130 UTC" in rows
    assert "c2 s2 inventory@v1 4 " in rows
    assert "c3 s3 inventory@v1 0 " in rows
    links = html.links()
    for conv_id in ("c1", "c2", "c3"):
        assert f"/api/debug/ui/conversations/{conv_id}" in links
    # where everything is: the docs, the document, the JSON endpoints
    for url in ("/api/debug/docs", "/api/debug/openapi.json", "/api/debug/conversations"):
        assert url in links
    assert html.text("facts") == "3 conversations 6 turns"


async def test_index_pages_through_many_conversations(
    http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ui, "PAGE_SIZE", 2)
    first = await page(http, INDEX)
    assert "c1" in first.text("conversations") and "c3" not in first.text("conversations")
    assert "?page=2" in first.links()
    second = await page(http, f"{INDEX}?page=2")
    assert "c3" in second.text("conversations") and "c1" not in second.text("conversations")
    assert "?page=1" in second.links()
    beyond = await http.get(f"{INDEX}?page=9")
    assert beyond.status_code == 200 and "no conversation on page 9" in beyond.text.lower()
    for bad in ("0", "x", "-1", "1.5", "\u0661"):
        refused = await http.get(INDEX, params={"page": bad})
        assert refused.status_code == 400 and "page number" in refused.text


async def test_index_of_an_empty_store() -> None:
    async with client_for(MemoryTurnStore()) as http:
        response = await http.get(INDEX)
    assert response.status_code == 200
    assert "The store holds no conversation yet." in response.text


# --- one conversation: the runtime-history ribbon ---------------------------------------------


async def test_ribbon_colours_each_turn_by_its_runtime_and_marks_the_switch(
    http: httpx.AsyncClient,
) -> None:
    html = await page(http, "/api/debug/ui/conversations/c1")
    turns = html.with_class("turn")
    assert [(t["data-turn-id"], t["data-runtime"], t["style"]) for t in turns] == [
        ("c1-t1", INVENTORY, style_of(BLUE)),
        ("c1-t2", PLANNER, style_of(ORANGE)),
    ]
    assert [t["href"] for t in turns] == [
        "/api/debug/ui/turn/c1/s1/c1-t1",
        "/api/debug/ui/turn/c1/s1/c1-t2",
    ]
    switches = html.with_class("switch")
    assert [(s["data-from"], s["data-to"]) for s in switches] == [(INVENTORY, PLANNER)]
    # the pointer stands apart from the history, in its own box
    assert html.text("pointer") == "current pointer planner@v1"
    assert "/api/debug/conversations/c1" in html.links()  # its JSON twin


async def test_ribbon_of_a_conversation_that_switches_back(http: httpx.AsyncClient) -> None:
    html = await page(http, "/api/debug/ui/conversations/c2")
    runtimes = [t["data-runtime"] for t in html.with_class("turn")]
    assert runtimes == [INVENTORY, INVENTORY, PLANNER, INVENTORY]
    switches = [(s["data-from"], s["data-to"]) for s in html.with_class("switch")]
    assert switches == [(INVENTORY, PLANNER), (PLANNER, INVENTORY)]
    assert "moved" not in html.text("pointer")  # the pointer is where the last turn ran


async def test_the_ribbon_as_it_was_at_a_time(http: httpx.AsyncClient) -> None:
    html = await page(http, f"/api/debug/ui/conversations/c2?as_of_ms={T0 + 1025}")
    assert [t["data-runtime"] for t in html.with_class("turn")] == [INVENTORY, INVENTORY]
    assert "as of" in html.text("as-of")
    bad = await http.get("/api/debug/ui/conversations/c2?as_of_ms=later")
    assert bad.status_code == 400 and "as_of_ms must be an integer" in bad.text
    assert bad.headers["content-type"] == "text/html; charset=utf-8"


async def test_pointer_that_moved_after_the_last_turn_is_marked() -> None:
    store = MemoryTurnStore()
    await write_story(store)
    await store.conversations.set_current_runtime("c2", "s2", PLANNER, "planner", T0 + 5000)
    async with client_for(store) as http:
        html = await page(http, "/api/debug/ui/conversations/c2")
    assert html.text("pointer") == "current pointer (moved since the last turn) planner@v1"
    assert [t["data-runtime"] for t in html.with_class("turn")][-1] == INVENTORY


async def test_conversation_without_turns(http: httpx.AsyncClient) -> None:
    html = await page(http, "/api/debug/ui/conversations/c3")
    assert html.with_class("turn") == [] and "no turn stored yet" in html.text("ribbon")
    assert html.text("pointer") == "current pointer inventory@v1"


async def test_unknown_conversation_is_a_404_page(http: httpx.AsyncClient) -> None:
    html = await page(http, "/api/debug/ui/conversations/nope", status=404)
    assert "/api/debug/conversations/nope" in html.links()


async def test_pages_show_what_the_read_path_shows(store: TurnStore) -> None:
    """Under the pointer-as-history bug every turn shows the pointer, on the page as in JSON."""
    async with client_for(store, PointerAsHistoryReadPath()) as http:
        html = await page(http, "/api/debug/ui/conversations/c1")
        body = (await http.get("/api/debug/conversations/c1")).json()
    assert [t["data-runtime"] for t in html.with_class("turn")] == [PLANNER, PLANNER]
    assert html.with_class("switch") == []
    assert [s["runtime_key"] for s in body["runtime_history"]] == [PLANNER]


# --- one turn -------------------------------------------------------------------------------


async def test_turn_page_shows_each_phase_with_runtime_inference_and_payload(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get("/api/debug/ui/turn/c1/s1/c1-t2")
    html = Elements(response.text)
    rows = [a for tag, a in html.tags if tag == "tr" and "data-phase" in a]
    assert [r["data-phase"] for r in rows] == [
        "pre_inference",
        "post_inference",
        "post_tools",
        "final",
    ]
    assert all(r["class"] == "" for r in rows)  # no phase disagrees with the turn
    assert html.text("turn-runtime") == PLANNER
    # the turn's runtime chip, then one per phase: all planner's colour
    assert [c["style"] for c in html.with_class("chip")] == [style_of(ORANGE)] * 5
    assert "inf-c1-2" in response.text
    # decoded payloads are pretty-printed; the undecodable one is shown as stored, with why
    assert "&#34;llm_text&#34;" in response.text or "&quot;llm_text&quot;" in response.text
    assert "payload is not valid JSON" in html.text("phases")
    assert "/api/debug/turn/c1/s1/c1-t2" in html.links()
    assert "/api/debug/ui/conversations/c1" in html.links()


async def test_turn_page_flags_a_phase_stored_under_another_runtime() -> None:
    """What the upsert-overwrite bug leaves behind: the turn row rewritten by a later save,
    its first snapshot still under the runtime the inference started with."""
    store = MemoryTurnStore(on_conflict=new_value_wins)
    await store.conversations.set_current_runtime("c1", "s1", INVENTORY, "inventory", T0)
    pre = payload("t1", "s1", "i1", INVENTORY, PRE_INFERENCE)
    await store.save("c1", "s1", "t1", PRE_INFERENCE, T0, pre)
    final = payload("t1", "s1", "i1", PLANNER, FINAL)
    await store.save("c1", "s1", "t1", FINAL, T0 + 5, final)
    async with client_for(store) as http:
        html = await page(http, "/api/debug/ui/turn/c1/s1/t1")
    assert html.text("turn-runtime") == PLANNER
    rows = {a["data-phase"]: a["class"] for _, a in html.tags if "data-phase" in a}
    assert rows == {PRE_INFERENCE: "differs", FINAL: ""}
    assert "≠ turn" in html.text("phases")
    assert "post_inference, post_tools" in html.text("missing")


async def test_unknown_turn_is_a_404_page(http: httpx.AsyncClient) -> None:
    await page(http, "/api/debug/ui/turn/c1/s1/nope", status=404)


# --- escaping and odd ids ---------------------------------------------------------------------


async def test_everything_from_the_store_is_escaped() -> None:
    store = MemoryTurnStore()
    evil = "<img src=x onerror=alert(1)>"  # no '/': it must be addressable by path
    await store.conversations.set_current_runtime(evil, "s&1", f"{evil}@v1", "x", T0)
    body = payload(f"t{evil}", "s&1", f"i{evil}", f"{evil}@v1", PRE_INFERENCE)
    await store.save(evil, "s&1", f"t{evil}", PRE_INFERENCE, T0, body)
    async with client_for(store) as http:
        responses = [
            await http.get(url)
            for url in (
                INDEX,
                f"/api/debug/ui/conversations/{ui.segment(evil)}",
                "/api/debug/ui/turn/{}/{}/{}".format(
                    *(ui.segment(v) for v in (evil, "s&1", f"t{evil}"))
                ),
            )
        ]
    for response in responses:
        assert response.status_code == 200
        text = response.text
        assert "<img" not in text
        assert "&lt;img src=x onerror=alert(1)&gt;" in text


async def test_an_id_no_path_can_address_is_shown_without_a_link() -> None:
    store = MemoryTurnStore()
    await store.conversations.set_current_runtime("a/b", "s1", INVENTORY, "inventory", T0)
    async with client_for(store) as http:
        html = await page(http, INDEX)
    assert "a/b" in html.text("conversations")
    assert not any("/conversations/a" in link for link in html.links())


def test_ids_become_one_path_segment() -> None:
    assert ui.segment("c 1") == "c%201"
    assert ui.segment("c?1#") == "c%3F1%23"
    assert ui.segment("a/b") is None and ui.segment("") is None
    assert ui.turn_url("c1", "s1", "") is None


def test_timestamps_for_people() -> None:
    assert ui.when(350) == "t=350 ms"
    assert ui.when(T0 + 130) == "2023-11-14 22:13:20.130 UTC"


# --- the docs ---------------------------------------------------------------------------------


async def test_docs_page_loads_swagger_ui_from_this_server(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/debug/docs")
    assert response.status_code == 200
    html = Elements(response.text)
    sources = [a.get("src") or a.get("href") for tag, a in html.tags if tag in ("script", "link")]
    assert "/api/debug/docs/assets/swagger-ui-bundle.js" in sources
    assert "/api/debug/docs/assets/swagger-ui.css" in sources
    assert "http://" not in response.text and "https://" not in response.text  # no CDN
    assert '"/api/debug/openapi.json"' in response.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        served = await http.get(f"/api/debug/docs/assets/{asset}")
        assert served.status_code == 200 and len(served.content) > 100_000


async def test_docs_page_without_swagger_ui_points_at_the_document(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ui, "swagger_ui_assets", lambda: None)
    async with client_for(store) as http:
        response = await http.get("/api/debug/docs")
        assert (await http.get("/api/debug/docs/assets/swagger-ui.css")).status_code == 404
    assert response.status_code == 200
    assert "swagger-ui-py" in response.text and "/api/debug/openapi.json" in response.text


async def test_pages_refuse_other_methods_as_the_api_does(http: httpx.AsyncClient) -> None:
    for url in (INDEX, "/api/debug/ui/conversations/c1", "/api/debug/docs"):
        response = await http.post(url)
        assert (response.status_code, response.headers["allow"]) == (405, "GET, HEAD")
