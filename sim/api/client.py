"""A small typed client of the debug HTTP API, and the reference for parsing its payloads.

Every response has a frozen attrs model. :func:`decode` builds one from decoded JSON: it
ignores fields it does not know (so a newer server does not break an older client) and
refuses a missing required field or a value of the wrong type with
:class:`ResponseShapeError`, naming the field's path (``items[2].runtime_key``).

A conversation's ``current_runtime_key`` is its latest pointer, not history: the runtime
of a past turn is the ``runtime_key`` of that turn (:class:`TurnItem`, :class:`TurnDetail`)
or the span covering it in :attr:`ConversationDetail.runtime_history`.
"""

from __future__ import annotations

import functools
import types
import typing
from typing import Any, TypeVar
from urllib.parse import quote

import attrs
import httpx

from persisters.errors import TurnsimError

T = TypeVar("T")


class ResponseShapeError(TurnsimError):
    """A response body does not have the shape of its model."""


class ApiError(TurnsimError):
    """The API refused a request (400/404/405, ...); ``message`` is its ``error`` text."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"HTTP {status}: {message}")


@attrs.frozen
class Error:
    error: str


@attrs.frozen
class Conversation:
    conv_id: str
    session_id: str
    #: The latest runtime pointer of the conversation; never the runtime of a past turn.
    current_runtime_key: str
    turn_count: int
    last_activity_ms: int


@attrs.frozen
class ConversationList:
    items: tuple[Conversation, ...]


@attrs.frozen
class RuntimeSpan:
    """Consecutive turns of a conversation that ran on one runtime."""

    runtime_key: str
    first_turn_id: str
    last_turn_id: str
    turn_count: int


@attrs.frozen
class ConversationDetail:
    conv_id: str
    session_id: str
    current_runtime_key: str
    turn_count: int
    last_activity_ms: int
    #: The runtimes the turns actually used, oldest first, from the stored turns.
    runtime_history: tuple[RuntimeSpan, ...]


@attrs.frozen
class TurnItem:
    """One stored snapshot, as ``GET /api/debug/turns`` lists it."""

    conv_id: str
    session_id: str
    turn_id: str
    phase: str
    runtime_key: str
    inference_id: str
    created_at_ms: int
    payload: str


@attrs.frozen
class TurnList:
    items: tuple[TurnItem, ...]


@attrs.frozen
class TurnPhase:
    """One phase snapshot of a turn with its payload decoded."""

    phase: str
    created_at_ms: int
    runtime_key: str
    inference_id: str
    payload: str
    #: The decoded payload; None when it does not decode (then ``parse_error`` says why).
    parsed: Any
    parse_error: str | None


@attrs.frozen
class TurnDetail:
    conv_id: str
    session_id: str
    turn_id: str
    runtime_key: str
    inference_id: str
    items: tuple[TurnPhase, ...]


MODELS: tuple[type, ...] = (
    Error,
    Conversation,
    ConversationList,
    RuntimeSpan,
    ConversationDetail,
    TurnItem,
    TurnList,
    TurnPhase,
    TurnDetail,
)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _describe(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _convert(hint: Any, value: Any, where: str) -> Any:
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        (inner,) = [o for o in options if o is not type(None)]
        return _convert(inner, value, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise ResponseShapeError(f"{where}: expected an array, got {_describe(value)}")
        item = typing.get_args(hint)[0]
        return tuple(_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if attrs.has(hint):
        return _build(hint, value, where)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ResponseShapeError(f"{where}: expected an integer, got {_describe(value)}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ResponseShapeError(f"{where}: expected a string, got {_describe(value)}")
        return value
    raise TypeError(f"{where}: unsupported field type {hint!r}")  # a bug in this module


def _build(cls: type[T], data: Any, where: str) -> T:
    if not isinstance(data, dict):
        raise ResponseShapeError(
            f"{where or 'response'}: expected an object, got {_describe(data)}"
        )
    hints = _hints(cls)
    values = {}
    for field in attrs.fields(cls):
        path = f"{where}.{field.name}" if where else field.name
        if field.name not in data:
            raise ResponseShapeError(f"{path}: required field is missing")
        values[field.name] = _convert(hints[field.name], data[field.name], path)
    return cls(**values)


def decode(cls: type[T], data: Any) -> T:
    """Build ``cls`` from decoded JSON: extra fields ignored, missing or mistyped refused."""
    return _build(cls, data, "")


def required_fields(cls: type) -> tuple[str, ...]:
    """The JSON fields a model requires (every field: a nullable one must still be present)."""
    return tuple(f.name for f in attrs.fields(cls))


class DebugClient:
    """Typed calls over an ``httpx.AsyncClient`` whose ``base_url`` points at the server."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def _get(self, cls: type[T], path: str, params: list[tuple[str, str]] | None = None) -> T:
        response = await self.http.get(path, params=params)
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200:
            message = body.get("error") if isinstance(body, dict) else None
            raise ApiError(response.status_code, str(message or response.text[:200]))
        return decode(cls, body)

    async def conversations(self) -> ConversationList:
        return await self._get(ConversationList, "/api/debug/conversations")

    async def conversation(
        self, conv_id: str, *, as_of_ms: int | None = None
    ) -> ConversationDetail:
        path = f"/api/debug/conversations/{_seg(conv_id)}"
        return await self._get(ConversationDetail, path, _as_of(as_of_ms))

    async def turns(
        self,
        *,
        conv_id: str | None = None,
        session_id: str | None = None,
        phase: str | None = None,
        runtime_key: str | None = None,
        inference_id: str | None = None,
        since_ms: int | None = None,
        as_of_ms: int | None = None,
        limit: int | None = None,
    ) -> TurnList:
        given = {
            "conv_id": conv_id,
            "session_id": session_id,
            "phase": phase,
            "runtime_key": runtime_key,
            "inference_id": inference_id,
            "since_ms": since_ms,
            "as_of_ms": as_of_ms,
            "limit": limit,
        }
        params = [(k, str(v)) for k, v in given.items() if v is not None]
        return await self._get(TurnList, "/api/debug/turns", params)

    async def turn(
        self, conv_id: str, session_id: str, turn_id: str, *, as_of_ms: int | None = None
    ) -> TurnDetail:
        path = f"/api/debug/turn/{_seg(conv_id)}/{_seg(session_id)}/{_seg(turn_id)}"
        return await self._get(TurnDetail, path, _as_of(as_of_ms))

    async def openapi(self) -> dict[str, Any]:
        response = await self.http.get("/api/debug/openapi.json")
        if response.status_code != 200:
            raise ApiError(response.status_code, response.text[:200])
        document = response.json()
        if not isinstance(document, dict):
            raise ResponseShapeError(f"openapi: expected an object, got {_describe(document)}")
        return document


def _as_of(as_of_ms: int | None) -> list[tuple[str, str]] | None:
    return None if as_of_ms is None else [("as_of_ms", str(as_of_ms))]


def _seg(value: str) -> str:
    """One path segment, percent-encoded (ids containing '/' cannot be addressed by path)."""
    return quote(value, safe="")
