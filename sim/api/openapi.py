"""The OpenAPI 3.1 document of the debug API, served at ``/api/debug/openapi.json``.

What a caller may rely on: :data:`OPENAPI` describes exactly the endpoints
:func:`sim.api.app.create_app` serves (paths, path and query parameters, every status and
body shape); the tests hold the app, the typed client and this document to one another.
:data:`PREFIX` is where every endpoint lives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from persisters.model import PHASES
from sim.api.params import DEFAULT_LIMIT, INT64_MAX, LIMIT_MAX

PREFIX = "/api/debug"


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
    _query_param(
        "as_of_ms",
        {"type": "integer", "minimum": 0, "maximum": INT64_MAX},
        "the store as it was at this time: only snapshots with created_at_ms <= as_of_ms",
    ),
]

#: ``as_of_ms`` of the per-conversation and per-turn endpoints.
AS_OF: dict[str, Any] = _query_param(
    "as_of_ms",
    {"type": "integer", "minimum": 0, "maximum": INT64_MAX},
    "the turns as they were at this time, derived from their snapshots up to then (the "
    "conversation's pointer is the current one: the index keeps no history)",
)

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
            parameters=[_path_param("conv_id"), AS_OF],
            errors=[404],
        ),
        f"{PREFIX}/turns": _operation(
            "turn snapshots, newest first", "TurnList", parameters=TURNS_PARAMETERS
        ),
        f"{PREFIX}/turn/{{conv_id}}/{{session_id}}/{{turn_id}}": _operation(
            "one turn with an item per phase snapshot",
            "TurnDetail",
            parameters=[*(_path_param(n) for n in ("conv_id", "session_id", "turn_id")), AS_OF],
            errors=[404],
        ),
        f"{PREFIX}/openapi.json": _operation("this document", "OpenAPI"),
    },
    "components": {"schemas": {**SCHEMAS, "OpenAPI": {"type": "object"}}},
}
