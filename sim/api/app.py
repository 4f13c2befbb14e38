"""The debug HTTP API: read-only JSON views of a TurnStore and its conversation index.

:func:`create_app` builds a Starlette app over any TurnStore that carries a
``.conversations`` index (the memory and SQLite stores both do). What a caller may rely on:

* A turn's runtime is the runtime stored with that turn (rule 2): ``runtime_history``,
  ``turn_count`` and every per-item ``runtime_key`` come from the turns and their
  snapshots, read through the :class:`~persisters.readpath.ReadPath`. A conversation shows its
  pointer only as ``current_runtime_key``.
* ``GET /api/debug/turns`` is one store read: with the per-turn read path a page needs no
  conversation record, so it is read as rows (one worker-thread hop on SQLite) and
  rendered straight to the bytes :func:`persisters.model.dumps` would write (see
  :func:`render_items`); ``bench/query.py`` measures it against direct SQL.
* Query parameters are validated at the edge into a frozen value (:class:`TurnsParams`);
  a bad or unknown parameter is a 400 naming it; an unknown id or path a 404; a method
  other than GET/HEAD a 405. Every body, errors included, is JSON from
  :func:`persisters.model.dumps`.
* :data:`OPENAPI` describes exactly these endpoints; a test keeps it true.
"""

from __future__ import annotations

import json
import operator
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from json.encoder import encode_basestring
from typing import Any

import attrs
import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from persisters.errors import StoreError, TransientStoreError
from persisters.model import (
    FINAL,
    MAX_LIMIT,
    PHASES,
    ConversationRecord,
    TurnQuery,
    TurnRecord,
    TurnSnapshot,
    dumps,
)
from persisters.readpath import ReadPath
from persisters.store import ConversationIndex, TurnStore

log = structlog.get_logger("turnsim.api")

PREFIX = "/api/debug"
DEFAULT_LIMIT = 100
LIMIT_MAX = 1000
INT64_MAX = 2**63 - 1
#: How much of a rejected value an error message quotes.
_QUOTE_MAX = 60


class ParameterError(ValueError):
    """A query parameter that cannot be used; the message names it."""

    def __init__(self, parameter: str, message: str) -> None:
        self.parameter = parameter
        super().__init__(message)


def _quote(value: str) -> str:
    shown = value if len(value) <= _QUOTE_MAX else value[:_QUOTE_MAX] + "..."
    return repr(shown)


#: Inclusive bounds of the integer query parameters.
INT_RANGES: dict[str, tuple[int, int]] = {"limit": (1, LIMIT_MAX), "since_ms": (0, INT64_MAX)}


def _expected(name: str) -> str:
    low, high = INT_RANGES[name]
    return f"{name} must be an integer from {low} to {high}"


def _parse_int(name: str, text: str) -> int:
    """A plain decimal ASCII integer (optional '-'); anything else is a ParameterError."""
    digits = text[1:] if text.startswith("-") else text
    if not digits or not digits.isascii() or not digits.isdigit():
        raise ParameterError(name, f"{_expected(name)}, got {_quote(text)}")
    if len(digits.lstrip("0")) > 19:  # beyond int64 either way: no int() on huge input
        raise ParameterError(name, f"{_expected(name)}, got {_quote(text)}")
    return int(text)


def _in_range(instance: Any, attribute: attrs.Attribute, value: int | None) -> None:
    low, high = INT_RANGES[attribute.name]
    if value is not None and not low <= value <= high:
        raise ParameterError(attribute.name, f"{_expected(attribute.name)}, got {value}")


def _query_pairs(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


def refuse_query(pairs: Sequence[tuple[str, str]]) -> None:
    """Endpoints without query parameters refuse any (a typo would otherwise go unnoticed)."""
    if pairs:
        name = pairs[0][0]
        raise ParameterError(
            name, f"unknown query parameter {_quote(name)}; this endpoint takes none"
        )


def _check_phase(instance: Any, attribute: attrs.Attribute, value: str | None) -> None:
    if value is not None and value not in PHASES:
        raise ParameterError(
            "phase", f"phase must be one of {', '.join(PHASES)}, got {_quote(value)}"
        )


@attrs.frozen
class TurnsParams:
    """The validated query of ``GET /api/debug/turns``; ``None`` means "any"."""

    conv_id: str | None = None
    session_id: str | None = None
    phase: str | None = attrs.field(default=None, validator=_check_phase)
    runtime_key: str | None = None
    inference_id: str | None = None
    since_ms: int | None = attrs.field(default=None, validator=_in_range)
    limit: int = attrs.field(default=DEFAULT_LIMIT, validator=_in_range)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in attrs.fields(cls))

    @classmethod
    def from_query(cls, pairs: Sequence[tuple[str, str]]) -> TurnsParams:
        """Build from decoded query pairs.

        Unknown or repeated parameters are refused; an empty value means "not given".
        """
        names = cls.names()
        given: dict[str, str] = {}
        for name, value in pairs:
            if name not in names:
                raise ParameterError(
                    name,
                    f"unknown query parameter {_quote(name)}; expected one of {', '.join(names)}",
                )
            if name in given:
                raise ParameterError(name, f"{name} given more than once")
            given[name] = value
        values: dict[str, Any] = {k: v for k, v in given.items() if v != ""}
        for name in INT_RANGES:
            if name in values:
                values[name] = _parse_int(name, values[name])
        return cls(**values)

    def to_query(self) -> TurnQuery:
        return TurnQuery(
            conv_id=self.conv_id,
            session_id=self.session_id,
            phase=self.phase,
            runtime_key=self.runtime_key,
            inference_id=self.inference_id,
            since_ms=self.since_ms,
            limit=self.limit,
        )


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


def decode_payload(payload: str) -> tuple[Any, str | None]:
    """``(parsed, None)`` when the payload is JSON, else ``(None, reason)``."""

    def refuse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(payload, parse_constant=refuse_constant), None
    except ValueError as exc:
        return None, f"payload is not valid JSON: {exc}"
    except RecursionError:
        return None, "payload is not valid JSON: nested too deeply"


def shows_stored_runtime(read_path: ReadPath) -> bool:
    """Whether ``read_path`` shows every snapshot exactly as stored.

    True for :class:`ReadPath` itself (the per-turn rule) and for subclasses that override
    neither of its methods: such a path never looks at the conversation record and its
    ``view`` returns the snapshot unchanged, so a report needs neither.
    """
    kind = type(read_path)
    return kind.view is ReadPath.view and kind.snapshot_runtime is ReadPath.snapshot_runtime


def turn_runtime(
    read_path: ReadPath, turn: TurnRecord, conversation: ConversationRecord | None
) -> str:
    """The runtime a report shows for a turn row, decided by the read path."""
    # ReadPath decides per snapshot; a turn row is presented to it as its final snapshot.
    probe = TurnSnapshot(
        conv_id=turn.conv_id,
        session_id=turn.session_id,
        turn_id=turn.turn_id,
        phase=FINAL,
        runtime_key=turn.runtime_key,
        inference_id=turn.inference_id,
        created_at_ms=turn.updated_at_ms,
        payload="",
    )
    return read_path.snapshot_runtime(probe, conversation)


def runtime_history(
    read_path: ReadPath, turns: Sequence[TurnRecord], conversation: ConversationRecord | None
) -> list[dict[str, Any]]:
    """Consecutive turns (oldest first) grouped by the runtime each actually used."""
    spans: list[dict[str, Any]] = []
    for turn in turns:
        runtime = turn_runtime(read_path, turn, conversation)
        if spans and spans[-1]["runtime_key"] == runtime:
            spans[-1]["last_turn_id"] = turn.turn_id
            spans[-1]["turn_count"] += 1
        else:
            spans.append(
                {
                    "runtime_key": runtime,
                    "first_turn_id": turn.turn_id,
                    "last_turn_id": turn.turn_id,
                    "turn_count": 1,
                }
            )
    return spans


def _conversation_json(record: ConversationRecord, turn_count: int) -> dict[str, Any]:
    return {
        "conv_id": record.conv_id,
        "session_id": record.session_id,
        "current_runtime_key": record.current_runtime_key,
        "turn_count": turn_count,
        "last_activity_ms": record.last_activity_ms,
    }


def _phase_json(snapshot: TurnSnapshot) -> dict[str, Any]:
    parsed, parse_error = decode_payload(snapshot.payload)
    return {
        "phase": snapshot.phase,
        "created_at_ms": snapshot.created_at_ms,
        "runtime_key": snapshot.runtime_key,
        "inference_id": snapshot.inference_id,
        "payload": snapshot.payload,
        "parsed": parsed,
        "parse_error": parse_error,
    }


# --- GET /turns: one store read, items rendered straight to JSON text ---------------------

#: The fields of a ``/turns`` item in :class:`TurnSnapshot` order. A page row holds these
#: first (a SQLite row carries ``snapshot_id`` after them).
ITEM_FIELDS = (
    "conv_id",
    "session_id",
    "turn_id",
    "phase",
    "runtime_key",
    "inference_id",
    "created_at_ms",
    "payload",
)
_item_row = operator.attrgetter(*ITEM_FIELDS)
#: One item exactly as :func:`persisters.model.dumps` writes it: keys sorted, compact.
_ITEM_JSON = (
    '{"conv_id":%s,"created_at_ms":%d,"inference_id":%s,"payload":%s,"phase":%s,'
    '"runtime_key":%s,"session_id":%s,"turn_id":%s}'
)

#: Reads the page of rows (:data:`ITEM_FIELDS` first) that answers a query, newest first.
PageReader = Callable[[TurnQuery], Awaitable[Sequence[Sequence[Any]]]]


def item_json(row: Sequence[Any]) -> str:
    """``dumps`` of one ``/turns`` item given as a row, without building the dict.

    Stored values (text, an integer ``created_at_ms``) take the template, escaped by the
    very function ``dumps`` escapes strings with; anything else (a database written by
    another tool may hold NULL or numbers) goes through ``dumps`` itself.
    """
    conv_id, session_id, turn_id, phase, runtime_key, inference_id, created, payload = row[:8]
    if type(created) is int:
        q = encode_basestring
        try:
            return _ITEM_JSON % (
                q(conv_id),
                created,
                q(inference_id),
                q(payload),
                q(phase),
                q(runtime_key),
                q(session_id),
                q(turn_id),
            )
        except TypeError:  # a value that is not text
            pass
    return dumps(dict(zip(ITEM_FIELDS, row, strict=False)))


def render_items(rows: Iterable[Sequence[Any]]) -> str:
    """``dumps({"items": [...]})`` of page rows: the same text, without dicts in between."""
    return '{"items":[' + ",".join([item_json(row) for row in rows]) + "]}"


def page_reader(store: TurnStore) -> PageReader:
    """How ``/turns`` reads a page: in one store call, as rows when the store can.

    A store with ``list_rows`` (SQLite: one worker-thread hop, no snapshot objects) is read
    through it; any other store through ``list``.
    """
    list_rows = getattr(store, "list_rows", None)
    if list_rows is not None:
        return list_rows  # type: ignore[no-any-return]

    async def read_snapshots(query: TurnQuery) -> Sequence[Sequence[Any]]:
        return [_item_row(s) for s in await store.list(query)]

    return read_snapshots


def turn_counter(
    store: TurnStore,
) -> Callable[[Sequence[ConversationRecord]], Awaitable[Mapping[str, int]]]:
    """How ``/conversations`` counts turns: one store call when the store can.

    A store with ``turn_counts`` (both of ours) answers for every conversation at once;
    any other store is asked for each conversation's turns in turn.
    """
    turn_counts = getattr(store, "turn_counts", None)

    async def count(records: Sequence[ConversationRecord]) -> Mapping[str, int]:
        if turn_counts is not None:
            return await turn_counts()  # type: ignore[no-any-return]
        return {r.conv_id: len(await store.list_turns(r.conv_id)) for r in records}

    return count


Handler = Callable[[Request], Awaitable[Response]]


class DebugApi:
    """The endpoint handlers over one store, one conversation index and one read path."""

    def __init__(
        self, store: TurnStore, conversations: ConversationIndex, read_path: ReadPath
    ) -> None:
        self.store = store
        self.conversations = conversations
        self.read_path = read_path
        #: The per-turn read path needs no conversation records and no per-snapshot view.
        self.stored_runtime = shows_stored_runtime(read_path)
        self.read_page = page_reader(store)
        self.count_turns = turn_counter(store)

    async def list_conversations(self, request: Request) -> Response:
        refuse_query(_query_pairs(request))
        records = await self.conversations.list()
        counts = await self.count_turns(records)
        return JSON({"items": [_conversation_json(r, counts.get(r.conv_id, 0)) for r in records]})

    async def get_conversation(self, request: Request) -> Response:
        refuse_query(_query_pairs(request))
        conv_id = request.path_params["conv_id"]
        record = await self.conversations.get(conv_id)
        if record is None:
            return error(404, f"unknown conversation {_quote(conv_id)}")
        turns = await self.store.list_turns(conv_id)
        body = _conversation_json(record, len(turns))
        body["runtime_history"] = runtime_history(self.read_path, turns, record)
        return JSON(body)

    async def list_turns(self, request: Request) -> Response:
        query = TurnsParams.from_query(_query_pairs(request)).to_query()
        if self.stored_runtime:
            rows = await self.read_page(query)
        else:
            rows = [_item_row(view) for view in await self._views(query)]
        return JSONText(render_items(rows))

    async def _views(self, query: TurnQuery) -> list[TurnSnapshot]:
        """The snapshots answering ``query`` as the read path shows them (its conversation)."""
        seen: dict[str, ConversationRecord | None] = {}
        views = []
        for snapshot in await self.store.list(query):
            if snapshot.conv_id not in seen:
                seen[snapshot.conv_id] = await self.conversations.get(snapshot.conv_id)
            views.append(self.read_path.view(snapshot, seen[snapshot.conv_id]))
        return views

    async def get_turn(self, request: Request) -> Response:
        refuse_query(_query_pairs(request))
        conv_id = request.path_params["conv_id"]
        session_id = request.path_params["session_id"]
        turn_id = request.path_params["turn_id"]
        turn = await self.store.get_turn(conv_id, session_id, turn_id)
        # Every snapshot of this one turn, however old (no "newest N of the session" window).
        query = TurnQuery(conv_id=conv_id, session_id=session_id, turn_id=turn_id, limit=MAX_LIMIT)
        snapshots = list(reversed(await self.store.list(query)))
        if turn is None and not snapshots:
            return error(404, f"unknown turn {_quote(f'{conv_id}/{session_id}/{turn_id}')}")
        conversation = None if self.stored_runtime else await self.conversations.get(conv_id)
        views = [self.read_path.view(s, conversation) for s in snapshots]
        if turn is not None:
            runtime = turn_runtime(self.read_path, turn, conversation)
            inference_id = turn.inference_id
        else:  # snapshots without a turn row (an old database): the oldest one speaks
            runtime, inference_id = views[0].runtime_key, views[0].inference_id
        return JSON(
            {
                "conv_id": conv_id,
                "session_id": session_id,
                "turn_id": turn_id,
                "runtime_key": runtime,
                "inference_id": inference_id,
                "items": [_phase_json(v) for v in views],
            }
        )

    async def openapi(self, request: Request) -> Response:
        refuse_query(_query_pairs(request))
        return JSON(OPENAPI)


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


async def _on_parameter_error(request: Request, exc: ParameterError) -> Response:
    return error(400, str(exc))


async def _on_http_error(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 404:
        message = f"no such endpoint {_quote(request.url.path)}"
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
) -> Starlette:
    """The debug API over ``store`` and its ``.conversations`` index.

    The app only reads; it never closes the store (its owner does).
    """
    conversations: ConversationIndex = store.conversations  # type: ignore[attr-defined]
    api = DebugApi(store, conversations, read_path)
    routes = [
        Route(f"{PREFIX}/conversations", api.list_conversations, methods=["GET"]),
        Route(f"{PREFIX}/conversations/{{conv_id}}", api.get_conversation, methods=["GET"]),
        Route(f"{PREFIX}/turns", api.list_turns, methods=["GET"]),
        Route(
            f"{PREFIX}/turn/{{conv_id}}/{{session_id}}/{{turn_id}}", api.get_turn, methods=["GET"]
        ),
        Route(f"{PREFIX}/openapi.json", api.openapi, methods=["GET"]),
    ]
    return debug_app(routes)


def debug_app(routes: Sequence[BaseRoute]) -> Starlette:
    """A Starlette app with the API's request log and error handling around ``routes``.

    :func:`create_app` is this over the debug endpoints; ``bench/query.py`` serves a fixed
    route through it to measure what the HTTP stack costs without the store.
    """
    return Starlette(
        routes=list(routes),
        middleware=[Middleware(RequestLog)],
        exception_handlers={
            ParameterError: _on_parameter_error,
            HTTPException: _on_http_error,
            StoreError: _on_store_error,
            Exception: _on_unexpected,
        },
    )


# --- OpenAPI -------------------------------------------------------------------------------


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(description: str, properties: dict[str, Any]) -> dict[str, Any]:
    """An object schema whose every property is required (present, possibly null)."""
    return {
        "type": "object",
        "description": description,
        "required": list(properties),
        "properties": properties,
    }


def _str(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


def _int(description: str, minimum: int = 0) -> dict[str, Any]:
    return {"type": "integer", "minimum": minimum, "description": description}


def _list_of(name: str, description: str) -> dict[str, Any]:
    return _object(description, {"items": {"type": "array", "items": _ref(name)}})


_RUNTIME = "runtime key stored with the turn (per-turn truth); '' = unknown historical row"
_INFERENCE = "inference id stored with the turn; '' = unknown"
_CONVERSATION_FIELDS: dict[str, Any] = {
    "conv_id": _str("conversation id"),
    "session_id": _str("session the conversation belongs to"),
    "current_runtime_key": _str(
        "the conversation's CURRENT runtime pointer (latest profile switch); not history: "
        "never use it as the runtime of a past turn"
    ),
    "turn_count": _int("number of turns stored for the conversation"),
    "last_activity_ms": _int("last activity, milliseconds (simulation clock)"),
}
_SNAPSHOT_FIELDS: dict[str, Any] = {
    "phase": {"type": "string", "enum": list(PHASES), "description": "snapshot point"},
    "created_at_ms": _int("when the snapshot was taken, milliseconds"),
    "runtime_key": _str(_RUNTIME),
    "inference_id": _str(_INFERENCE),
    "payload": _str("the serialized turn exactly as stored"),
}

SCHEMAS: dict[str, Any] = {
    "Error": _object("a refused request", {"error": _str("what was wrong, naming the parameter")}),
    "Conversation": _object("one conversation of the index", _CONVERSATION_FIELDS),
    "ConversationList": _list_of("Conversation", "conversations ordered by conv_id"),
    "RuntimeSpan": _object(
        "consecutive turns that ran on one runtime",
        {
            "runtime_key": _str(_RUNTIME),
            "first_turn_id": _str("first turn of the span"),
            "last_turn_id": _str("last turn of the span"),
            "turn_count": _int("turns in the span", minimum=1),
        },
    ),
    "ConversationDetail": _object(
        "one conversation with the runtimes its turns actually used",
        {
            **_CONVERSATION_FIELDS,
            "runtime_history": {
                "type": "array",
                "items": _ref("RuntimeSpan"),
                "description": "derived from the stored turns, oldest first; never from "
                "the pointer",
            },
        },
    ),
    "TurnSnapshot": _object(
        "one stored snapshot of a turn",
        {
            "conv_id": _str("conversation id"),
            "session_id": _str("session id"),
            "turn_id": _str("turn id"),
            **_SNAPSHOT_FIELDS,
        },
    ),
    "TurnList": _list_of("TurnSnapshot", "snapshots, newest first"),
    "TurnPhase": _object(
        "one phase snapshot of a turn, with its payload decoded",
        {
            **_SNAPSHOT_FIELDS,
            "parsed": {"description": "the decoded payload; null when it does not decode"},
            "parse_error": {
                "type": ["string", "null"],
                "description": "why the payload does not decode; null when it does",
            },
        },
    ),
    "TurnDetail": _object(
        "one turn with an item per stored snapshot, oldest first",
        {
            "conv_id": _str("conversation id"),
            "session_id": _str("session id"),
            "turn_id": _str("turn id"),
            "runtime_key": _str(_RUNTIME),
            "inference_id": _str(_INFERENCE),
            "items": {"type": "array", "items": _ref("TurnPhase")},
        },
    ),
}


def _json_response(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _operation(
    summary: str,
    schema: str,
    *,
    parameters: Sequence[dict[str, Any]] = (),
    errors: Sequence[int] = (),
) -> dict[str, Any]:
    descriptions = {
        400: "a bad, unknown or repeated query parameter",
        404: "unknown id",
        405: "any method but GET/HEAD",
    }
    responses = {"200": _json_response("OK", schema)}
    for status in (400, *errors, 405):
        responses[str(status)] = _json_response(descriptions[status], "Error")
    return {"get": {"summary": summary, "parameters": list(parameters), "responses": responses}}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description + "; an empty value means not given",
    }


TURNS_PARAMETERS: list[dict[str, Any]] = [
    _query_param("conv_id", {"type": "string"}, "only this conversation"),
    _query_param("session_id", {"type": "string"}, "only this session"),
    _query_param("phase", {"type": "string", "enum": list(PHASES)}, "only this phase"),
    _query_param("runtime_key", {"type": "string"}, "only snapshots stored under this runtime"),
    _query_param("inference_id", {"type": "string"}, "only this inference"),
    _query_param(
        "since_ms",
        {"type": "integer", "minimum": 0, "maximum": INT64_MAX},
        "only snapshots with created_at_ms >= since_ms",
    ),
    _query_param(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX, "default": DEFAULT_LIMIT},
        "at most this many items",
    ),
]

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "turnsim debug API",
        "version": "1",
        "description": "Read-only views of stored turns. A turn's runtime is the one stored "
        "with it; a conversation's current_runtime_key is only the latest pointer. Unknown "
        "query parameters are refused with 400.",
    },
    "paths": {
        f"{PREFIX}/conversations": _operation("list conversations", "ConversationList"),
        f"{PREFIX}/conversations/{{conv_id}}": _operation(
            "one conversation with its runtime history",
            "ConversationDetail",
            parameters=[_path_param("conv_id")],
            errors=[404],
        ),
        f"{PREFIX}/turns": _operation(
            "turn snapshots, newest first", "TurnList", parameters=TURNS_PARAMETERS
        ),
        f"{PREFIX}/turn/{{conv_id}}/{{session_id}}/{{turn_id}}": _operation(
            "one turn with an item per phase snapshot",
            "TurnDetail",
            parameters=[_path_param(n) for n in ("conv_id", "session_id", "turn_id")],
            errors=[404],
        ),
        f"{PREFIX}/openapi.json": _operation("this document", "OpenAPI"),
    },
    "components": {"schemas": {**SCHEMAS, "OpenAPI": {"type": "object"}}},
}
