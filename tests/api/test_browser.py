"""The web pages in a real headless browser: Playwright driving Debian's Chromium.

A run's database is made and served the way the README says (``turnsim run ... --db`` then
``turnsim serve --db``, a real server on a free loopback port), and Chromium follows the
links a person would: the index, a conversation's ribbon, a turn's phases, Swagger UI.
Screenshots of every page are saved under ``test-artifacts/browser/`` (gitignored;
``TURNSIM_ARTIFACTS`` moves the folder).

Chromium is found at ``$TURNSIM_CHROMIUM`` or as ``chromium`` on the PATH (Debian's
``chromium`` package; ``playwright install`` is never needed). Without one these tests skip
with a message saying so, except on CI (``CI`` set), where ``.ci/run`` installs it and a
missing browser fails them.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from sim.colours import runtime_colours

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = [ROOT / "scenarios" / "inflight_switch.yaml", ROOT / "scenarios" / "tool_rounds.yaml"]
ARTIFACTS = Path(os.environ.get("TURNSIM_ARTIFACTS") or ROOT / "test-artifacts") / "browser"
INVENTORY, PLANNER = "inventory@v1", "planner@v1"


def chromium() -> str:
    """The Chromium executable, or skip (fail on CI) saying how to get one."""
    found = os.environ.get("TURNSIM_CHROMIUM") or shutil.which("chromium")
    found = found or shutil.which("chromium-browser")
    if found:
        return found
    message = (
        "no Chromium installed: the browser tests need Debian's chromium package "
        "(apt-get install -y chromium) or TURNSIM_CHROMIUM=/path/to/chromium"
    )
    if os.environ.get("CI"):
        pytest.fail(f"{message}; .ci/run installs it, so CI must have it")
    pytest.skip(message)


def rgb(colour: str) -> str:
    """``#1f77b4`` as the browser's computed style writes it: ``rgb(31, 119, 180)``."""
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({red}, {green}, {blue})"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``turnsim serve`` over a fresh run's database; yields the banner's URL."""
    db = tmp_path_factory.mktemp("browser") / "run.db"
    turnsim = [sys.executable, "-m", "sim"]
    made = subprocess.run(
        [*turnsim, "run", *map(str, SCENARIOS), "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    proc = subprocess.Popen(
        [*turnsim, "serve", "--db", str(db), "--port", "0", "--log-format", "json"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    assert proc.stderr is not None
    url = ""
    lines: list[str] = []
    for line in proc.stderr:
        lines.append(line)
        match = re.search(r"serving .* at (http://\S+) \(Ctrl-C to stop\)", line)
        if match:
            url = match.group(1)
            break
    assert url, "".join(lines)
    # Keep reading the request log so that the server never blocks on a full pipe.
    drain = threading.Thread(target=lambda: lines.extend(proc.stderr or ()), daemon=True)
    drain.start()
    try:
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, "".join(lines)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable)
        try:
            yield launched
        finally:
            launched.close()


class Visit:
    """One browser page that records what a person would not want to see: requests that
    leave this server, console errors, script errors; and saves screenshots."""

    def __init__(self, page: Page, origin: str, name: str) -> None:
        self.page = page
        self.name = name
        self.origin = origin  # every request must start with it
        self.outside: list[str] = []
        self.errors: list[str] = []
        page.on("request", self._request)
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("response", lambda r: r.status >= 400 and self.errors.append(f"{r.status} {r.url}"))

    def _request(self, request: Any) -> None:
        if not request.url.startswith(self.origin):
            self.outside.append(request.url)

    def shot(self, step: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{step}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def check_clean(self) -> None:
        assert self.outside == [], f"requests left the server: {self.outside}"
        assert self.errors == [], f"browser errors: {self.errors}"


@pytest.fixture
def visit(browser: Browser, server: str, request: pytest.FixtureRequest) -> Iterator[Visit]:
    context = browser.new_context(viewport={"width": 1100, "height": 720})
    page = context.new_page()
    page.set_default_timeout(15_000)
    origin = re.match(r"http://[^/]+/", server)
    assert origin is not None
    seen = Visit(page, origin.group(0), request.node.name)
    try:
        yield seen
    finally:
        context.close()


def test_pages_load_and_links_lead_from_the_index_to_a_turn(visit: Visit, server: str) -> None:
    page = visit.page
    page.goto(server)  # the banner's URL: it answered 404 before these pages existed
    assert page.title() == "turnsim debug"
    rows = page.locator("#conversations tbody tr")
    assert rows.count() == 2
    assert "inflight-switch.c1" in rows.nth(0).inner_text()
    visit.shot("1-index")

    page.get_by_role("link", name="inflight-switch.c1").click()
    page.wait_for_url("**/api/debug/ui/conversations/inflight-switch.c1")
    assert page.locator("h1").inner_text() == "inflight-switch.c1"
    assert page.locator("#ribbon .turn").count() == 3
    visit.shot("2-conversation")

    page.locator("#ribbon .turn").nth(1).click()  # t2: the turn raced by a switch
    page.wait_for_url(re.compile(r".*/api/debug/ui/turn/inflight-switch\.c1/s1/[0-9a-f-]{36}$"))
    phases = page.locator("#phases tbody tr")
    assert [phases.nth(i).get_attribute("data-phase") for i in range(phases.count())] == [
        "pre_inference",
        "post_inference",
        "post_tools",
        "final",  # the snapshot hook's final phase
        "final",  # the final persister's save
    ]
    assert page.locator("#turn-runtime").inner_text() == PLANNER
    assert page.locator("#phases tr.differs").count() == 0
    page.locator("#phases details").last.locator("summary").click()  # the final payload
    assert '"geppetto.runtime@v1": "planner@v1"' in page.locator("#phases pre").last.inner_text()
    visit.shot("3-turn")

    page.get_by_role("link", name="as JSON").click()
    assert '"runtime_key":"planner@v1"' in page.locator("body").inner_text()
    page.go_back()
    page.locator(".crumbs a").nth(1).click()  # back up to the conversation
    page.wait_for_url("**/api/debug/ui/conversations/inflight-switch.c1")
    page.locator("header").get_by_role("link", name="Conversations").click()
    page.wait_for_url(server)
    visit.check_clean()


def test_ribbon_shows_the_runtime_each_turn_ran_on_and_the_switches(
    visit: Visit, server: str
) -> None:
    """inflight-switch: t1 on inventory, a switch to planner, t2 on planner though the
    profile switched back to inventory while it ran, t3 on inventory; pointer inventory."""
    page = visit.page
    page.goto(f"{server}ui/conversations/inflight-switch.c1")
    colours = runtime_colours([INVENTORY, PLANNER])
    cells = page.locator("#ribbon .turn")
    shown = [
        (
            cells.nth(i).get_attribute("data-runtime"),
            cells.nth(i).evaluate("e => getComputedStyle(e).backgroundColor"),
        )
        for i in range(cells.count())
    ]
    assert shown == [
        (INVENTORY, rgb(colours[INVENTORY])),
        (PLANNER, rgb(colours[PLANNER])),
        (INVENTORY, rgb(colours[INVENTORY])),
    ]
    assert rgb(colours[INVENTORY]) != rgb(colours[PLANNER])
    # a switch mark between each pair of turns that ran on different runtimes, in order
    children = page.locator("#ribbon > *")
    kinds = [children.nth(i).get_attribute("class") for i in range(children.count())]
    assert kinds == ["turn", "switch", "turn", "switch", "turn"]
    assert page.locator("#ribbon .switch").first.is_visible()
    # the pointer is drawn apart from the history, in its own box, in inventory's colour
    pointer = page.locator("#pointer .chip")
    assert pointer.inner_text() == INVENTORY
    assert pointer.evaluate("e => getComputedStyle(e).backgroundColor") == rgb(colours[INVENTORY])
    ribbon_box = page.locator("#ribbon").bounding_box()
    pointer_box = page.locator("#pointer").bounding_box()
    assert ribbon_box and pointer_box and pointer_box["x"] >= ribbon_box["x"] + ribbon_box["width"]
    visit.shot("ribbon")
    visit.check_clean()


def test_swagger_ui_renders_the_document_and_tries_an_endpoint_offline(
    visit: Visit, server: str
) -> None:
    page = visit.page
    page.goto(f"{server}docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "turnsim debug API" in page.locator(".swagger-ui .info .title").inner_text()
    assert page.locator(".opblock").count() == 5
    visit.shot("1-docs")

    page.locator(
        ".opblock-summary-path", has_text=re.compile(r"^/api/debug/conversations$")
    ).click()
    page.get_by_role("button", name="Execute").click()
    response = page.locator(".live-responses-table tr.response .response-col_status").first
    response.wait_for()
    assert response.inner_text().strip() == "200"
    assert "inflight-switch.c1" in page.locator(".live-responses-table").inner_text()
    visit.shot("2-tried")
    visit.check_clean()  # every asset came from this server: no CDN


def test_unknown_conversation_is_a_page_not_a_crash(visit: Visit, server: str) -> None:
    response = visit.page.goto(f"{server}ui/conversations/nope")
    assert response is not None and response.status == 404
    assert "conversation 'nope'" in visit.page.locator("main").inner_text()
    visit.page.get_by_role("link", name="Back to the conversations").click()
    visit.page.wait_for_url(server)


# --- the static pages: explore --html and logs --plot .html ---------------------------------


def _static_visit(browser: Browser, name: str) -> Iterator[Visit]:
    context = browser.new_context(viewport={"width": 1150, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        yield Visit(page, "file:///", name)  # a file, and nothing fetched from elsewhere
    finally:
        context.close()


@pytest.fixture
def static_visit(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Visit]:
    yield from _static_visit(browser, request.node.name)


def test_explore_report_page_opens_offline(static_visit: Visit, tmp_path: Path) -> None:
    html = tmp_path / "html"
    made = subprocess.run(
        [
            *(sys.executable, "-m", "sim", "explore", "scenarios/random_switches.yaml"),
            *("--seeds", "4", "--variant", "upsert-overwrite", "--store", "memory"),
            *("--shrink-runs", "4", "--no-progress", "--out", str(tmp_path / "out")),
            "--no-failure-db",  # run in the repository: leave no .turnsim there
            *("--html", str(html)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert made.returncode == 1, made.stdout + made.stderr  # some seeds fail
    page = static_visit.page
    page.goto((html / "index.html").as_uri())
    assert page.title().startswith("turnsim explore: ")
    assert page.locator("section.scenario").count() == 1
    assert page.locator(".strip svg").is_visible() and page.locator(".timing svg").is_visible()
    groups = page.locator(".group")
    assert groups.count() >= 1
    assert groups.first.locator(".swimlanes svg").is_visible()
    groups.first.locator("summary").click()
    assert "name: random-switches" in groups.first.locator("pre").inner_text()
    static_visit.shot("explore")
    page.get_by_role("link", name="report.json").click()  # the link beside the page works
    assert '"scenarios"' in page.locator("body").inner_text()
    static_visit.check_clean()


def test_logs_plot_html_page_opens_offline(static_visit: Visit, tmp_path: Path) -> None:
    log, out = tmp_path / "run.jsonl", tmp_path / "run.html"
    turnsim = [sys.executable, "-m", "sim"]
    for args in (
        ["run", "scenarios/inflight_switch.yaml", "--log-file", str(log)],
        ["logs", str(log), "--plot", str(out)],
    ):
        done = subprocess.run([*turnsim, *args], capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stdout + done.stderr
    static_visit.page.goto(out.as_uri())
    assert static_visit.page.locator("svg").first.is_visible()
    assert "inflight-switch seed 7: PASS" in static_visit.page.locator("li").first.inner_text()
    static_visit.shot("swimlanes")
    static_visit.check_clean()
