"""Test data for the debug API: the canonical story written through a store.

The story is written with ``store.save`` / ``store.conversations`` only, so it can later be
replaced by a database the simulator produces through its real pipelines. Tests assert
the literal values listed in the docstring of :func:`write_story`.

Also here: :func:`schema_errors`, a small validator for the subset of JSON Schema the
OpenAPI document uses (no validator library is a dependency), and :func:`client_for` /
:func:`get_ok`, the app in process with every answer checked against that document.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import structlog

from persisters.memory_store import MemoryTurnStore
from persisters.model import (
    FINAL,
    KEY_INFERENCE_ID,
    KEY_RUNTIME,
    KEY_SESSION_ID,
    POST_INFERENCE,
    POST_TOOLS,
    PRE_INFERENCE,
    Block,
    Turn,
    TurnSaveOptions,
    dumps,
)
from persisters.readpath import ReadPath
from persisters.sqlite_store import SQLiteTurnStore
from persisters.store import TurnStore
from sim.api.app import create_app
from sim.api.openapi import OPENAPI

T0 = 1_700_000_000_000
INVENTORY = "inventory@v1"
PLANNER = "planner@v1"
#: A truncated payload: stored as is, reported with ``parse_error``.
UNDECODABLE = '{"id": "c1-t2", "blocks": [{"kind": "user", "text": "where is my'
STORE_KINDS = ("memory", "sqlite")


def payload(turn_id: str, session_id: str, inference_id: str, runtime: Any, phase: str) -> str:
    """A serialized turn as the inference loop would snapshot it at ``phase``."""
    turn = Turn(
        id=turn_id,
        blocks=(Block("system", "You are a helpful assistant."), Block("user", f"ask {turn_id}")),
        metadata={KEY_SESSION_ID: session_id, KEY_INFERENCE_ID: inference_id, KEY_RUNTIME: runtime},
    )
    if phase != PRE_INFERENCE:
        turn = turn.with_blocks(Block("llm_text", f"answer {turn_id}"))
    return turn.serialize()


async def _turn(
    store: TurnStore,
    conv_id: str,
    session_id: str,
    turn_id: str,
    inference_id: str,
    runtime: Any,
    phases: list[tuple[str, int]],
) -> None:
    for phase, at_ms in phases:
        body = payload(turn_id, session_id, inference_id, runtime, phase)
        await store.save(conv_id, session_id, turn_id, phase, at_ms, body)


async def write_story(store: TurnStore) -> None:
    """Write the canonical story (runtimes come from each payload's metadata, rule 5).

    * ``c1``/``s1``: turn ``c1-t1`` (``inf-c1-1``) on inventory@v1 with phases
      pre_inference, post_inference, final at T0+10/20/30; the profile switches to planner
      at T0+100; turn ``c1-t2`` (``inf-c1-2``) on planner@v1 with pre_inference,
      post_inference, post_tools (undecodable payload), final at T0+110/120/125/130.
      Pointer: planner@v1; last activity T0+130.
    * ``c2``/``s2``: four final-only turns at T0+1010..1040: ``c2-t1``, ``c2-t2`` on
      inventory@v1, ``c2-t3`` on planner@v1 (runtime as an object in the metadata),
      ``c2-t4`` back on inventory@v1. Pointer: inventory@v1.
    * ``c3``/``s3``: a conversation on inventory@v1 with no turns yet (T0+2000).
    """
    conversations = store.conversations  # type: ignore[attr-defined]
    await conversations.set_current_runtime("c1", "s1", INVENTORY, "inventory", T0)
    await _turn(
        store,
        "c1",
        "s1",
        "c1-t1",
        "inf-c1-1",
        INVENTORY,
        [(PRE_INFERENCE, T0 + 10), (POST_INFERENCE, T0 + 20), (FINAL, T0 + 30)],
    )
    await conversations.set_current_runtime("c1", "s1", PLANNER, "planner", T0 + 100)
    await _turn(
        store,
        "c1",
        "s1",
        "c1-t2",
        "inf-c1-2",
        PLANNER,
        [(PRE_INFERENCE, T0 + 110), (POST_INFERENCE, T0 + 120)],
    )
    await store.save(
        "c1",
        "s1",
        "c1-t2",
        POST_TOOLS,
        T0 + 125,
        UNDECODABLE,
        TurnSaveOptions(runtime_key=PLANNER, inference_id="inf-c1-2"),
    )
    await _turn(store, "c1", "s1", "c1-t2", "inf-c1-2", PLANNER, [(FINAL, T0 + 130)])
    await conversations.touch("c1", T0 + 130)

    await conversations.set_current_runtime("c2", "s2", INVENTORY, "inventory", T0 + 1000)
    for n, runtime in enumerate(
        [INVENTORY, INVENTORY, {"slug": "planner", "runtime_key": PLANNER}, INVENTORY], start=1
    ):
        slug = "planner" if isinstance(runtime, dict) else "inventory"
        await conversations.set_current_runtime(
            "c2", "s2", PLANNER if slug == "planner" else INVENTORY, slug, T0 + 1000 + 10 * n
        )
        await _turn(
            store, "c2", "s2", f"c2-t{n}", f"inf-c2-{n}", runtime, [(FINAL, T0 + 1000 + 10 * n)]
        )

    await conversations.set_current_runtime("c3", "s3", INVENTORY, "inventory", T0 + 2000)


async def build_database(path: Path) -> Path:
    """A migrated SQLite file holding the story (written read-write, then closed)."""
    store = await SQLiteTurnStore.open(path)
    try:
        await write_story(store)
    finally:
        await store.close()
    return path


@contextlib.asynccontextmanager
async def story_store(kind: str, tmp_path: Path) -> AsyncIterator[TurnStore]:
    """The story in a ``memory`` store, or in a ``sqlite`` file reopened read-only."""
    if kind == "memory":
        store: Any = MemoryTurnStore()
        await write_story(store)
    else:
        path = await build_database(tmp_path / "story.db")
        store = await SQLiteTurnStore.open(path, read_only=True)
    try:
        yield store
    finally:
        await store.close()


@contextlib.contextmanager
def captured_info_logs() -> Iterator[list[dict[str, Any]]]:
    """Capture structlog events from info up (the test session logs only errors)."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    try:
        with structlog.testing.capture_logs() as events:
            yield events
    finally:
        structlog.configure(**saved)


# --- a validator for the JSON Schema subset of the OpenAPI document -----------------------

_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "null": lambda v: v is None,
}
#: Keywords the validator understands; a schema using another one fails the test.
KNOWN_KEYWORDS = frozenset(
    {"type", "properties", "required", "items", "enum", "minimum", "maximum", "$ref"}
    | {"description", "default"}
)


def schema_errors(
    document: dict[str, Any], schema: dict[str, Any], value: Any, at: str = "$"
) -> list[str]:
    """Every way ``value`` breaks ``schema`` (``$ref`` resolved in ``document``); [] if none.

    Strict the other way too: an object may carry no property the schema does not list,
    so the document cannot silently fall behind the server.
    """
    unknown = set(schema) - KNOWN_KEYWORDS
    if unknown:
        return [f"{at}: schema uses unsupported keywords {sorted(unknown)}"]
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        return schema_errors(document, document["components"]["schemas"][name], value, at)
    errors: list[str] = []
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            return [f"{at}: expected {' or '.join(types)}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{at}: {value!r} not in {schema['enum']}")
    if "minimum" in schema and isinstance(value, int) and value < schema["minimum"]:
        errors.append(f"{at}: {value} < minimum {schema['minimum']}")
    if "maximum" in schema and isinstance(value, int) and value > schema["maximum"]:
        errors.append(f"{at}: {value} > maximum {schema['maximum']}")
    if isinstance(value, dict) and "properties" in schema:
        properties = schema["properties"]
        errors += [f"{at}: missing {k!r}" for k in schema.get("required", []) if k not in value]
        errors += [f"{at}: undocumented field {k!r}" for k in value if k not in properties]
        for key, sub in properties.items():
            if key in value:
                errors += schema_errors(document, sub, value[key], f"{at}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += schema_errors(document, schema["items"], item, f"{at}[{i}]")
    return errors


def response_schema(document: dict[str, Any], template: str, status: int) -> dict[str, Any]:
    """The schema the document promises for ``GET template`` answering ``status``."""
    responses = document["paths"][template]["get"]["responses"]
    return responses[str(status)]["content"]["application/json"]["schema"]


# --- the app in process (httpx ASGITransport), its answers checked against the document ----


def client_for(store: TurnStore, read_path: ReadPath | None = None) -> httpx.AsyncClient:
    """An HTTP client of ``create_app(store)`` in process; an app exception fails the test."""
    app = create_app(store) if read_path is None else create_app(store, read_path=read_path)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def checked(response: httpx.Response, template: str) -> Any:
    """The body of a response, after checking it against the OpenAPI document."""
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    # One JSON encoder: the bytes are exactly persisters.model.dumps of the body.
    assert response.content == dumps(body).encode()
    schema = response_schema(OPENAPI, template, response.status_code)
    assert schema_errors(OPENAPI, schema, body) == []
    return body


async def get_ok(http: httpx.AsyncClient, url: str, template: str, **kw: Any) -> Any:
    """``GET url``: a 200 whose body is :func:`checked` against ``template``'s schema."""
    response = await http.get(url, **kw)
    assert response.status_code == 200, response.text
    return checked(response, template)
