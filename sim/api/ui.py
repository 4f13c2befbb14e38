"""The debug API's web pages for people: server-rendered HTML, no build step, no CDN.

The pages (all GET/HEAD, read-only; Jinja2 templates shipped in ``sim/api/templates``):

* ``/`` redirects to ``/api/debug/``; ``/favicon.ico`` is a small SVG icon;
* ``/api/debug/``: the index: where everything is, and the conversation list (current
  pointer, turn count, last activity), :data:`PAGE_SIZE` to a page (``?page=N``);
* ``/api/debug/ui/conversations/{conv_id}``: one conversation as a **runtime-history
  ribbon**: its turns in order, coloured by the runtime each ran on, switches marked
  between turns whose runtimes differ, the current pointer shown apart from the history;
* ``/api/debug/ui/turn/{conv_id}/{session_id}/{turn_id}``: one turn's phases with their
  runtime, inference id and payload;
* ``/api/debug/docs``: Swagger UI over ``openapi.json``, its assets served from the
  ``swagger-ui-py`` package under ``/api/debug/docs/assets/`` (it works offline).

What a caller may rely on: every page reads through :class:`~sim.api.reads.DebugReads`, so
it shows exactly the runtimes the JSON endpoints report (each page links its JSON twin);
runtimes are coloured by :func:`sim.colours.runtime_colours` and always labelled too;
everything from the store is HTML-escaped. An unknown id is a 404 page.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from persisters.model import PHASES
from sim.api.openapi import OPENAPI, PREFIX
from sim.api.params import ParameterError, as_of_query
from sim.api.reads import ConversationView, DebugReads
from sim.colours import runtime_colours, text_colour

#: Conversations listed on one page of the index.
PAGE_SIZE = 200
#: Where the pages live, beside the JSON endpoints under :data:`~sim.api.openapi.PREFIX`.
UI = f"{PREFIX}/ui"
DOCS = f"{PREFIX}/docs"
DOCS_ASSETS = f"{DOCS}/assets"
#: Every path the pages add to the app (the rest is the API that OPENAPI describes).
PAGES: tuple[str, ...] = (
    "/",
    "/favicon.ico",
    f"{PREFIX}/",
    f"{UI}/conversations/{{conv_id}}",
    f"{UI}/turn/{{conv_id}}/{{session_id}}/{{turn_id}}",
    DOCS,
    DOCS_ASSETS,
)

#: Two runtime-coloured squares. Browsers ask every origin for /favicon.ico, even when
#: showing a JSON body, so it is answered rather than logged as a 404.
FAVICON = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    b'<rect x="1" y="5" width="6" height="6" fill="#1f77b4"/>'
    b'<rect x="9" y="5" width="6" height="6" fill="#ff7f0e"/></svg>'
)

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("sim.api", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def swagger_ui_assets() -> str | None:
    """The folder of Swagger UI's files (the ``swagger-ui-py`` package), or None.

    Found without importing the package (its ``__init__`` loads every web framework's
    handler list); only its static files are served.
    """
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = os.path.join(next(iter(spec.submodule_search_locations)), "static")
    return folder if os.path.isfile(os.path.join(folder, "swagger-ui-bundle.js")) else None


# --- what the templates are given -----------------------------------------------------------


def segment(value: str) -> str | None:
    """``value`` as one percent-encoded path segment, or None when no path can address it
    (empty, or holding ``/``: the router decodes ``%2F`` before matching)."""
    if not value or "/" in value:
        return None
    return quote(value, safe="")


def conversation_url(conv_id: str) -> str | None:
    part = segment(conv_id)
    return None if part is None else f"{UI}/conversations/{part}"


def turn_url(conv_id: str, session_id: str, turn_id: str) -> str | None:
    parts = [segment(v) for v in (conv_id, session_id, turn_id)]
    if any(p is None for p in parts):
        return None
    return f"{UI}/turn/" + "/".join(p for p in parts if p is not None)


def short_id(value: str, size: int = 8) -> str:
    """The first characters of a long id (a UUID shows as ``dcd45605``), as the timeline does."""
    return value if len(value) <= size + 2 else value[:size]


def when(ms: int) -> str:
    """A timestamp for people: wall-clock milliseconds as UTC time, virtual ones as ``t=``."""
    if ms >= 10**11:  # after 1973: a wall clock, not the simulation's virtual clock
        try:
            moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
        except (OverflowError, OSError, ValueError):  # past year 9999: show the number
            return f"{ms} ms"
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
    return f"t={ms} ms"


class Colours:
    """Runtime colours for one page (see :func:`sim.colours.runtime_colours`)."""

    def __init__(self, runtimes: Iterable[str]) -> None:
        self.by_runtime = runtime_colours(runtimes)

    def background(self, runtime: str) -> str:
        return self.by_runtime.get(runtime) or runtime_colours([runtime])[runtime]

    def style(self, runtime: str) -> str:
        """An inline style: the runtime's colour behind text that reads on it."""
        colour = self.background(runtime)
        return f"background:{colour};color:{text_colour(colour)}"

    def legend(self) -> list[tuple[str, str]]:
        return [(runtime or "(unknown)", self.style(runtime)) for runtime in self.by_runtime]


def ribbon(view: ConversationView) -> list[dict[str, Any]]:
    """The ribbon's cells, in order: a ``turn`` per turn, a ``switch`` between two turns
    that ran on different runtimes (the pointer moved between them)."""
    cells: list[dict[str, Any]] = []
    previous: str | None = None
    for index, (turn, runtime) in enumerate(zip(view.turns, view.runtimes, strict=True), 1):
        if previous is not None and runtime != previous:
            cells.append({"kind": "switch", "from": previous, "to": runtime})
        cells.append(
            {
                "kind": "turn",
                "index": index,
                "turn": turn,
                "runtime": runtime,
                "href": turn_url(turn.conv_id, turn.session_id, turn.turn_id),
            }
        )
        previous = runtime
    return cells


def _render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    page = _templates.get_template(name).render(
        prefix=PREFIX,
        docs=DOCS,
        short=short_id,
        when=when,
        conversation_url=conversation_url,
        turn_url=turn_url,
        **context,
    )
    return HTMLResponse(page, status_code=status)


def not_found(what: str, json_url: str | None = None) -> HTMLResponse:
    return _render("not_found.html", 404, title="Not found", what=what, json_url=json_url)


# --- the pages --------------------------------------------------------------------------------


class Pages:
    """The page handlers over the store reads."""

    def __init__(self, reads: DebugReads, assets: str | None) -> None:
        self.reads = reads
        self.assets = assets

    async def root(self, request: Request) -> Response:
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    async def favicon(self, request: Request) -> Response:
        return Response(
            FAVICON, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"}
        )

    async def index(self, request: Request) -> Response:
        raw = request.query_params.get("page", "1")
        page = int(raw) if raw.isascii() and raw.isdigit() and 0 < len(raw) < 10 else 0
        if page < 1:
            return _render(
                "not_found.html",
                400,
                title="Bad page number",
                what=f"page {raw!r}: a page number is a whole number from 1",
                json_url=None,
            )
        conversations = await self.reads.conversation_list()
        pages = max(1, -(-len(conversations) // PAGE_SIZE))
        shown = conversations[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        colours = Colours(c["current_runtime_key"] for c in shown)
        endpoints = [
            (path, item["get"]["summary"])
            for path, item in OPENAPI["paths"].items()
            if "{" not in path
        ]
        return _render(
            "index.html",
            title="turnsim debug",
            conversations=shown,
            total=len(conversations),
            turns=sum(c["turn_count"] for c in conversations),
            page=page,
            pages=pages,
            first=(page - 1) * PAGE_SIZE + 1,
            colours=colours,
            endpoints=endpoints,
            docs_available=self.assets is not None,
        )

    async def conversation(self, request: Request) -> Response:
        conv_id = request.path_params["conv_id"]
        # the timeline as it was at a time: ?as_of_ms= (as on the JSON endpoint; the pages
        # ignore any other query parameter)
        pairs = [(k, v) for k, v in request.query_params.multi_items() if k == "as_of_ms"]
        try:
            as_of_ms = as_of_query(pairs)
        except ParameterError as exc:
            return _render(
                "not_found.html", 400, title="Bad parameter", what=str(exc), json_url=None
            )
        json_url = f"{PREFIX}/conversations/{segment(conv_id) or ''}"
        if as_of_ms is not None:
            json_url += f"?as_of_ms={as_of_ms}"
        view = await self.reads.conversation(conv_id, as_of_ms=as_of_ms)
        if view is None:
            return not_found(f"conversation {conv_id!r}", json_url)
        pointer = view.record.current_runtime_key
        colours = Colours([*view.runtimes, pointer])
        last = view.runtimes[-1] if view.runtimes else None
        return _render(
            "conversation.html",
            title=f"conversation {conv_id}",
            view=view,
            record=view.record,
            cells=ribbon(view),
            rows=list(zip(view.turns, view.runtimes, strict=True)),
            pointer=pointer,
            pointer_moved=last is not None and pointer != last,
            colours=colours,
            json_url=json_url,
            as_of_ms=as_of_ms,
        )

    async def turn(self, request: Request) -> Response:
        conv_id = request.path_params["conv_id"]
        session_id = request.path_params["session_id"]
        turn_id = request.path_params["turn_id"]
        parts = [segment(v) or "" for v in (conv_id, session_id, turn_id)]
        json_url = f"{PREFIX}/turn/" + "/".join(parts)
        body = await self.reads.turn(conv_id, session_id, turn_id)
        if body is None:
            return not_found(f"turn {conv_id}/{session_id}/{turn_id}", json_url)
        items = body["items"]
        colours = Colours([body["runtime_key"], *(i["runtime_key"] for i in items)])
        return _render(
            "turn.html",
            title=f"turn {short_id(turn_id)} of {conv_id}",
            turn=body,
            phases=[_phase(item, body["runtime_key"]) for item in items],
            missing=[p for p in PHASES if p not in {i["phase"] for i in items}],
            colours=colours,
            json_url=json_url,
        )

    async def docs(self, request: Request) -> Response:
        return _render(
            "docs.html",
            title="turnsim debug API: docs",
            assets=DOCS_ASSETS if self.assets is not None else None,
            openapi_url=f"{PREFIX}/openapi.json",
        )


def _phase(item: dict[str, Any], turn_runtime: str) -> dict[str, Any]:
    """One row of the turn page: the snapshot, its payload pretty-printed, and whether its
    runtime disagrees with the turn's (what the late-bound snapshot bug left behind)."""
    if item["parse_error"] is None:
        shown = json.dumps(item["parsed"], indent=2, ensure_ascii=False, sort_keys=False)
    else:
        shown = item["payload"]
    return {**item, "shown": shown, "differs": item["runtime_key"] != turn_runtime}


def ui_routes(reads: DebugReads) -> Sequence[BaseRoute]:
    """The pages' routes (:data:`PAGES`), to sit beside the API's in one app."""
    assets = swagger_ui_assets()
    pages = Pages(reads, assets)
    routes: list[BaseRoute] = [
        Route("/", pages.root, methods=["GET"]),
        Route("/favicon.ico", pages.favicon, methods=["GET"]),
        Route(f"{PREFIX}/", pages.index, methods=["GET"]),
        Route(f"{UI}/conversations/{{conv_id}}", pages.conversation, methods=["GET"]),
        Route(f"{UI}/turn/{{conv_id}}/{{session_id}}/{{turn_id}}", pages.turn, methods=["GET"]),
        Route(DOCS, pages.docs, methods=["GET"]),
    ]
    if assets is not None:
        routes.append(Mount(DOCS_ASSETS, app=StaticFiles(directory=assets)))
    return routes
