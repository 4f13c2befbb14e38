"""The debug HTTP API: routes, error handling and :func:`create_app` over a TurnStore.

:func:`create_app` builds a Starlette app over any TurnStore that carries a
``.conversations`` index (the memory and SQLite stores both do): the JSON endpoints here,
the web pages of :mod:`sim.api.ui` beside them. What a caller may rely on:

* A turn's runtime is the runtime stored with that turn (rule 2): ``runtime_history``,
  ``turn_count`` and every per-item ``runtime_key`` come from the turns and their
  snapshots, read through the :class:`~persisters.readpath.ReadPath`. A conversation shows its
  pointer only as ``current_runtime_key`` (:mod:`sim.api.views` renders them).
* ``GET /api/debug/turns`` is one store read: with the per-turn read path a page needs no
  conversation record, so it is read as rows (one worker-thread hop on SQLite) and
  rendered straight to the bytes :func:`persisters.model.dumps` would write (see
  :func:`sim.api.views.render_items`); ``bench/query.py`` measures it against direct SQL.
* Query parameters are validated at the edge (:mod:`sim.api.params`); a bad or unknown
  parameter is a 400 naming it; an unknown id or path a 404; a method other than GET/HEAD
  a 405. Every body, errors included, is JSON from :func:`persisters.model.dumps`.
* :data:`sim.api.openapi.OPENAPI` describes exactly these endpoints (:func:`api_routes`; the
  web pages are not API and are not in it); a test keeps it true.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from persisters.errors import StoreError, TransientStoreError
from persisters.model import TurnQuery, dumps
from persisters.readpath import ReadPath
from persisters.store import TurnStore
from sim.api.openapi import OPENAPI, PREFIX
from sim.api.params import ParameterError, TurnsParams, as_of_query, quoted, refuse_query
from sim.api.reads import DebugReads
from sim.api.typed import keep_sound, typed_item
from sim.api.ui import ui_routes
from sim.api.views import item_row, render_items

log = structlog.get_logger("turnsim.api")


class JSON(Response):
    """A JSON response through the project's one encoder."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        # A lone surrogate (from an odd path) becomes a \\uXXXX escape: still valid JSON.
        return dumps(content).encode("utf-8", "backslashreplace")


class JSONText(Response):
    """A JSON body already rendered to text (by :func:`render_items`); encoded as JSON is."""

    media_type = "application/json"

    def render(self, content: str) -> bytes:
        return content.encode("utf-8", "backslashreplace")


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSON:
    return JSON({"error": message}, status_code=status, headers=headers)


def _query_pairs(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


# --- how the endpoints read the store -------------------------------------------------------

#: Reads the page of rows (:data:`~sim.api.views.ITEM_FIELDS` first) that answers a query,
#: newest first.
PageReader = Callable[[TurnQuery], Awaitable[Sequence[Sequence[Any]]]]


def page_reader(store: TurnStore) -> PageReader:
    """How ``/turns`` reads a page: one ``list_rows`` call, rows without snapshot objects
    (SQLite: one worker-thread hop)."""
    return store.list_rows


# --- the endpoints --------------------------------------------------------------------------


class DebugApi:
    """The JSON endpoint handlers over the store reads (:class:`~sim.api.reads.DebugReads`)."""

    def __init__(self, reads: DebugReads) -> None:
        self.reads = reads
        self.read_page = page_reader(reads.store)

    async def list_conversations(self, request: Request) -> Response:
        refuse_query(_query_pairs(request))
        return JSON({"items": await self.reads.conversation_list()})

    async def get_conversation(self, request: Request) -> Response:
        as_of_ms = as_of_query(_query_pairs(request))
        conv_id = request.path_params["conv_id"]
        view = await self.reads.conversation(conv_id, as_of_ms=as_of_ms)
        if view is None:
            return error(404, f"unknown conversation {quoted(conv_id)}")
        return JSON(view.to_json())

    async def list_turns(self, request: Request) -> Response:
        query = TurnsParams.from_query(_query_pairs(request)).to_query()
        if self.reads.stored_runtime:
            rows = keep_sound(await self.read_page(query), typed_item, "turns")
        else:
            rows = [item_row(view) for view in await self.reads.snapshot_views(query)]
        return JSONText(render_items(rows))

    async def get_turn(self, request: Request) -> Response:
        conv_id = request.path_params["conv_id"]
        session_id = request.path_params["session_id"]
        turn_id = request.path_params["turn_id"]
        as_of_ms = as_of_query(_query_pairs(request))
        body = await self.reads.turn(conv_id, session_id, turn_id, as_of_ms=as_of_ms)
        if body is None:
            return error(404, f"unknown turn {quoted(f'{conv_id}/{session_id}/{turn_id}')}")
        return JSON(body)

    async def openapi(self, request: Request) -> Response:
        refuse_query(_query_pairs(request))
        return JSON(OPENAPI)


def api_routes(api: DebugApi) -> list[BaseRoute]:
    """The JSON endpoints, exactly the paths :data:`~sim.api.openapi.OPENAPI` describes."""
    return [
        Route(f"{PREFIX}/conversations", api.list_conversations, methods=["GET"]),
        Route(f"{PREFIX}/conversations/{{conv_id}}", api.get_conversation, methods=["GET"]),
        Route(f"{PREFIX}/turns", api.list_turns, methods=["GET"]),
        Route(
            f"{PREFIX}/turn/{{conv_id}}/{{session_id}}/{{turn_id}}", api.get_turn, methods=["GET"]
        ),
        Route(f"{PREFIX}/openapi.json", api.openapi, methods=["GET"]),
    ]


# --- the app: request log, errors, routes ---------------------------------------------------


class RequestLog:
    """ASGI middleware: one ``http.request`` event per request (method, path, status, time)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before responding

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            log.info(
                "http.request",
                method=scope["method"],
                path=scope["path"],
                query=scope.get("query_string", b"").decode("latin-1"),
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
            )


def host_of(header: str) -> str | None:
    """The host name of a ``Host`` header, lowercased, IPv6 literals in brackets
    (``[::1]:8765`` -> ``[::1]``); None when it is not a valid header."""
    header = header.strip().lower()
    if header.startswith("["):
        end = header.find("]")
        if end < 0 or (header[end + 1 :] and not header[end + 1 :].startswith(":")):
            return None
        host, port = header[: end + 1], header[end + 2 :]
    else:
        host, _, port = header.partition(":")
        if not host or "[" in host or "]" in host:
            return None
    if port and not port.isdigit():
        return None
    return host


class AllowedHosts:
    """ASGI middleware: answer only requests whose ``Host`` is one of ``hosts``.

    What Starlette's ``TrustedHostMiddleware`` does (its IPv6 parsing varies with the
    version), answering a JSON 400 as every other error here. Against DNS rebinding: a web
    page on another name that resolves to this address cannot read the API. ``"*"``
    allows any host.
    """

    def __init__(self, app: ASGIApp, hosts: Sequence[str]) -> None:
        self.app = app
        self.hosts = frozenset(h.lower() for h in hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or "*" in self.hosts:
            await self.app(scope, receive, send)
            return
        header = dict(scope.get("headers", ())).get(b"host", b"").decode("latin-1")
        if host_of(header) in self.hosts:
            await self.app(scope, receive, send)
            return
        message = (
            f"host {quoted(header)} is not served here; start the server with "
            f"--allow-host NAME to serve it"
        )
        await error(400, message)(scope, receive, send)


async def _on_parameter_error(request: Request, exc: ParameterError) -> Response:
    return error(400, str(exc))


async def _on_http_error(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 404:
        message = f"no such endpoint {quoted(request.url.path)}"
    elif exc.status_code == 405:
        message = f"method {request.method} not allowed; use GET"
    else:
        message = exc.detail
    headers = dict(exc.headers or {})
    if "Allow" in headers:  # Starlette joins a set: sort it so the header is stable
        headers["Allow"] = ", ".join(sorted(headers["Allow"].split(", ")))
    return error(exc.status_code, message, headers=headers)


async def _on_store_error(request: Request, exc: StoreError) -> Response:
    log.error("http.store_error", path=request.url.path, error=str(exc))
    status = 503 if isinstance(exc, TransientStoreError) else 500
    return error(status, f"store error: {exc}")


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    # Starlette re-raises after sending this, so the server still logs the traceback.
    return error(500, "internal error")


def create_app(
    store: TurnStore,
    *,
    read_path: ReadPath = ReadPath(),  # noqa: B008 (stateless)
    allowed_hosts: Sequence[str] | None = None,
) -> Starlette:
    """The debug API over ``store`` and its ``.conversations`` index: the JSON endpoints
    and the web pages for people (:mod:`sim.api.ui`), both read through ``read_path``.

    ``allowed_hosts``: the ``Host`` names answered (:class:`AllowedHosts`); None answers
    any (the server passes the names it is bound to). The app only reads; it never closes
    the store (its owner does).
    """
    reads = DebugReads(store, read_path)
    return debug_app([*api_routes(DebugApi(reads)), *ui_routes(reads)], allowed_hosts)


def debug_app(routes: Sequence[BaseRoute], allowed_hosts: Sequence[str] | None = None) -> Starlette:
    """A Starlette app with the API's request log and error handling around ``routes``.

    :func:`create_app` is this over the debug endpoints; ``bench/query.py`` serves a fixed
    route through it to measure what the HTTP stack costs without the store. A path with a
    trailing slash is an unknown path like any other (JSON 404/405), never a redirect
    (whose target would come from the client's ``Host`` header).
    """
    middleware = [Middleware(RequestLog)]
    if allowed_hosts is not None:
        middleware.append(Middleware(AllowedHosts, hosts=list(allowed_hosts)))
    app = Starlette(
        routes=list(routes),
        middleware=middleware,
        exception_handlers={
            ParameterError: _on_parameter_error,
            HTTPException: _on_http_error,
            StoreError: _on_store_error,
            Exception: _on_unexpected,
        },
    )
    app.router.redirect_slashes = False
    return app
