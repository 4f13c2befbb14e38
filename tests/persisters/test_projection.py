"""The metadata projection: the Python rules, and the SQL backfill that must agree with them."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from persisters import schema
from persisters.model import (
    INFERENCE_ID_KEYS,
    RUNTIME_KEYS,
    RUNTIME_OBJECT_FIELDS,
    WHITESPACE,
    dumps,
    extract_inference_id,
    extract_runtime_key,
    metadata_of_payload,
)

RT = "geppetto.runtime@v1"
INF = "geppetto.inference_id@v1"


def test_alias_names_are_the_documented_ones() -> None:
    # domain.md fixes these names and their precedence; the SQL is generated from them
    assert RUNTIME_KEYS == (RT, "runtime", "runtime_key")
    assert INFERENCE_ID_KEYS == (INF, "inference_id")
    assert RUNTIME_OBJECT_FIELDS == ("runtime_key", "key", "slug", "profile", "profile_key")


RUNTIME_CASES: list[tuple[Any, str]] = [
    # no metadata, or metadata that is not an object
    (None, ""),
    ([RT, "x@v1"], ""),
    ("x@v1", ""),
    (7, ""),
    ({}, ""),
    (MappingProxyType({RT: "ro@v1"}), "ro@v1"),
    # the canonical key as a string, trimmed
    ({RT: "inventory@v1"}, "inventory@v1"),
    ({RT: " \tinventory@v1\n "}, "inventory@v1"),
    ({RT: "in ventory"}, "in ventory"),  # only the ends are trimmed
    # non-string scalars are projected as their string form
    ({RT: 3}, "3"),
    ({RT: -12}, "-12"),
    ({RT: 0}, "0"),  # zero is a value, not "absent"
    ({RT: True}, "true"),
    ({RT: False}, "false"),
    ({RT: 1.5}, "1.5"),
    # the object shape: first non-empty of runtime_key, key, slug, profile, profile_key
    ({RT: {"runtime_key": "a", "key": "b", "slug": "c", "profile": "d", "profile_key": "e"}}, "a"),
    ({RT: {"key": "b", "slug": "c", "profile": "d", "profile_key": "e"}}, "b"),
    ({RT: {"slug": "c", "profile": "d", "profile_key": "e"}}, "c"),
    ({RT: {"profile": "d", "profile_key": "e"}}, "d"),
    ({RT: {"profile_key": "e"}}, "e"),
    ({RT: {"profile_key": "e", "profile": "d"}}, "d"),  # field order, not JSON order
    # blank, empty, null and object fields are all skipped
    ({RT: {"runtime_key": " ", "key": "", "slug": None, "profile": {}, "profile_key": "e"}}, "e"),
    ({RT: {"runtime_key": ["a"], "key": " b "}}, "b"),
    ({RT: {"runtime_key": 7}}, "7"),
    ({RT: {"key": True}}, "true"),
    ({RT: {"name": "x", "id": "y"}}, ""),  # unknown fields are not aliases
    ({RT: {RT: "nested"}}, ""),
    # a field may hold a runtime object itself, one level deep (the real extraction at the
    # cutover read {"profile": {"slug": ...}}; migration-playbook.md, "Nested runtime")
    ({RT: {"profile": {"slug": "planner"}}}, "planner"),
    ({RT: {"profile": {"slug": " planner "}}}, "planner"),
    ({RT: {"profile": {"slug": "planner", "runtime_key": "planner@v2"}}}, "planner@v2"),
    ({RT: {"profile": {"slug": 3}}}, "3"),
    ({RT: {"slug": "c", "profile": {"slug": "d"}}}, "c"),  # field order still decides
    ({RT: {"profile": {"slug": "d"}, "profile_key": "e"}}, "d"),
    ({RT: {"profile": {"slug": " "}, "profile_key": "e"}}, "e"),  # empty: next field
    ({RT: {"key": {"name": "x"}, "slug": "s"}}, "s"),
    ({"runtime": {"profile": {"key": "p@v1"}}}, "p@v1"),
    ({RT: {"profile": {"slug": ""}}, "runtime_key": "k@v1"}, "k@v1"),  # then the next alias
    # deeper than that is not read: absent, so the next alias decides
    ({RT: {"profile": {"profile": {"slug": "deep"}}}}, ""),
    ({RT: {"profile": {"profile": {"slug": "deep"}}}, "runtime": "r@v1"}, "r@v1"),
    # empty, whitespace, null, list or unusable object: fall through to the next alias
    ({RT: "", "runtime": "r@v1"}, "r@v1"),
    ({RT: WHITESPACE, "runtime": "r@v1"}, "r@v1"),
    ({RT: None, "runtime": "r@v1"}, "r@v1"),
    ({RT: ["x@v1"], "runtime": "r@v1"}, "r@v1"),
    ({RT: {"slug": "  "}, "runtime": "r@v1"}, "r@v1"),
    ({RT: {}, "runtime_key": "k@v1"}, "k@v1"),
    # precedence: geppetto.runtime@v1, then runtime, then runtime_key
    ({RT: "g@v1", "runtime": "r@v1", "runtime_key": "k@v1"}, "g@v1"),
    ({"runtime_key": "k@v1", "runtime": "r@v1"}, "r@v1"),
    ({"runtime_key": "k@v1"}, "k@v1"),
    ({"runtime": {"key": "obj@v1"}, "runtime_key": "k@v1"}, "obj@v1"),
    ({"runtime": {"slug": ""}, "runtime_key": {"profile": "p"}}, "p"),
    ({"runtime": " ", "runtime_key": " "}, ""),
    # near misses are not aliases
    ({"geppetto.runtime@v2": "x"}, ""),
    ({"Runtime": "x", "RUNTIME_KEY": "y"}, ""),
    ({"runtime_key ": "x"}, ""),
    ({INF: "i1", "inference_id": "i2"}, ""),  # inference ids never leak into the runtime
]


@pytest.mark.parametrize(("metadata", "expected"), RUNTIME_CASES)
def test_extract_runtime_key(metadata: Any, expected: str) -> None:
    assert extract_runtime_key(metadata) == expected


INFERENCE_CASES: list[tuple[Any, str]] = [
    (None, ""),
    ("i1", ""),
    ([INF], ""),
    ({}, ""),
    ({INF: "i1"}, "i1"),
    ({INF: "\n i1 \t"}, "i1"),
    ({"inference_id": "legacy"}, "legacy"),
    ({INF: "i1", "inference_id": "legacy"}, "i1"),
    ({"inference_id": "legacy", INF: "i1"}, "i1"),  # precedence, not JSON order
    ({INF: "", "inference_id": "legacy"}, "legacy"),
    ({INF: WHITESPACE, "inference_id": "legacy"}, "legacy"),
    ({INF: None, "inference_id": "legacy"}, "legacy"),
    ({INF: {"id": "x"}, "inference_id": "legacy"}, "legacy"),  # objects are not scalars
    ({INF: ["x"], "inference_id": "legacy"}, "legacy"),
    ({INF: ["x"]}, ""),
    ({INF: 42}, "42"),
    ({INF: -7}, "-7"),
    ({INF: 0}, "0"),
    ({INF: 12345678901234567890}, "12345678901234567890"),
    ({"inference_id": 9}, "9"),
    ({INF: 2.5}, "2.5"),
    ({INF: False}, "false"),
    ({"inference_id": " "}, ""),
    ({"geppetto.inference_id@v2": "x", "inferenceId": "y"}, ""),
    ({RT: "r@v1", "runtime": "r"}, ""),  # runtimes never leak into the inference id
]


@pytest.mark.parametrize(("metadata", "expected"), INFERENCE_CASES)
def test_extract_inference_id(metadata: Any, expected: str) -> None:
    assert extract_inference_id(metadata) == expected


#: Go's ``unicode.IsSpace``, the set ``strings.TrimSpace`` trims, written out from Go's
#: documentation (not taken from persisters.model, so that the two can disagree).
GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000"
)


def test_whitespace_is_the_set_go_trims() -> None:
    assert sorted(WHITESPACE) == sorted(GO_SPACE)
    # Python's own notion differs only by four ASCII separators that Go keeps
    python_space = {chr(c) for c in range(0x110000) if chr(c).isspace()}
    assert python_space - set(GO_SPACE) == set("\x1c\x1d\x1e\x1f")
    assert set(GO_SPACE) <= python_space


#: (metadata, runtime key, inference id) with Unicode whitespace, as the real code reads them.
UNICODE_SPACE_CASES: list[tuple[dict[str, Any], str, str]] = [
    ({RT: "\u00a0", "runtime": "r@v1"}, "r@v1", ""),  # blank: falls through to the next alias
    ({RT: "\u3000planner@v1\u3000"}, "planner@v1", ""),  # padding is trimmed
    ({RT: {"slug": "\u2003"}, "runtime": "\u205fr@v1\x85"}, "r@v1", ""),
    ({RT: "\u2028\u2029\u202f\u1680"}, "", ""),
    ({RT: "\x1cx\x1f"}, "\x1cx\x1f", ""),  # not whitespace for Go: kept
    ({RT: "a@v1", INF: "\u200a", "inference_id": "\xa0i-1\u2000"}, "a@v1", "i-1"),
]


@pytest.mark.parametrize(("metadata", "runtime", "inference"), UNICODE_SPACE_CASES)
def test_unicode_whitespace_is_whitespace(
    conn: sqlite3.Connection, metadata: dict[str, Any], runtime: str, inference: str
) -> None:
    assert python_projection(metadata) == (runtime, inference)
    assert sql_projection(conn, dumps(metadata)) == (True, runtime, inference)
    payload = dumps({"id": "t", "blocks": [], "metadata": metadata, "data": {}})
    assert sql_projection(conn, payload, payload=True) == (True, runtime, inference)


# ---------------------------------------------------------------------------------------
# the SQL projection agrees with the Python one


@pytest.fixture(scope="module")
def conn() -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(":memory:")
    yield connection
    connection.close()


def _select(prefix: str) -> str:
    # the projections assume valid JSON with an object at ``prefix`` (as the backfill's
    # WHERE guarantees); CASE evaluates them only then, like the backfill does
    valid = schema.valid_sql(":doc", prefix)
    return (
        f"SELECT coalesce({valid}, 0), "
        f"CASE WHEN {valid} THEN {schema.runtime_sql(':doc', prefix)} END, "
        f"CASE WHEN {valid} THEN {schema.inference_sql(':doc', prefix)} END"
    )


SELECT_TOP = _select("$")
SELECT_PAYLOAD = _select("$.metadata")


def sql_projection(
    conn: sqlite3.Connection, doc: str, *, payload: bool = False
) -> tuple[bool, str | None, str | None]:
    """(valid, runtime_key, inference_id) as the migration's SQL computes them."""
    valid, runtime, inference = conn.execute(
        SELECT_PAYLOAD if payload else SELECT_TOP, {"doc": doc}
    ).fetchone()
    return bool(valid), runtime, inference


def python_projection(metadata: Any) -> tuple[str, str]:
    return extract_runtime_key(metadata), extract_inference_id(metadata)


DICT_RUNTIME_CASES = [case for case in RUNTIME_CASES if isinstance(case[0], dict)]
DICT_INFERENCE_CASES = [case for case in INFERENCE_CASES if isinstance(case[0], dict)]


@pytest.mark.parametrize(("metadata", "expected"), DICT_RUNTIME_CASES)
def test_sql_runtime_matches_the_table(
    conn: sqlite3.Connection, metadata: dict[str, Any], expected: str
) -> None:
    assert sql_projection(conn, dumps(metadata)) == (True, expected, extract_inference_id(metadata))


@pytest.mark.parametrize(("metadata", "expected"), DICT_INFERENCE_CASES)
def test_sql_inference_matches_the_table(
    conn: sqlite3.Connection, metadata: dict[str, Any], expected: str
) -> None:
    assert sql_projection(conn, dumps(metadata)) == (True, extract_runtime_key(metadata), expected)


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "   ",
        "not json",
        "{",
        "[]",
        '"text"',
        "42",
        "null",
        "{}",
        '{"metadata": null}',
        '{"metadata": [1]}',
        '{"metadata": "geppetto.runtime@v1"}',
        '{"metadata": {}}',
        '{"id": "t", "metadata": {"geppetto.runtime@v1": "a@v1"}}',
    ],
)
def test_sql_validity_matches_metadata_of_payload(conn: sqlite3.Connection, payload: str) -> None:
    valid, runtime, inference = sql_projection(conn, payload, payload=True)
    metadata = metadata_of_payload(payload)
    assert valid == (metadata is not None)
    if valid:
        assert (runtime, inference) == (
            extract_runtime_key(metadata),
            extract_inference_id(metadata),
        )


@pytest.mark.parametrize(
    "metadata",
    [
        {RT: "\x00", "runtime": "r@v1"},
        {RT: "inventory@v1\x00junk", INF: "a\x00b"},
        # a backslash before "u0000" is text, not a NUL: JSON writes it as \\u0000
        {RT: "a\\u0000b", INF: "\\u0000"},
        {RT: "\\\x00", "runtime": "r@v1"},  # an escaped backslash, then a real NUL
        {RT: "\\\\u0000", INF: "x\\\\\\u0000"},
    ],
)
def test_sql_and_python_agree_on_nul_characters(
    conn: sqlite3.Connection, metadata: dict[str, Any]
) -> None:
    """A NUL inside a metadata string must project the same way in SQL and in Python.

    Otherwise an old row backfilled by the migration and a later save of the same
    metadata disagree, and write-once refuses the save as a rewrite.
    """
    assert sql_projection(conn, dumps(metadata)) == (True, *python_projection(metadata))


# Keys: every real alias and object field, plus near misses and noise.
KEYS = st.sampled_from(
    [
        *RUNTIME_KEYS,
        *INFERENCE_ID_KEYS,
        *RUNTIME_OBJECT_FIELDS,
        "geppetto.session_id@v1",
        "geppetto.runtime@v2",
        "Runtime",
        "",
        "noise",
    ]
)
# NUL is left out here: SQLite's JSON functions cut strings at it (see the test above).
CHARS = st.characters(codec="utf-8", exclude_characters="\x00")
# Whitespace as Go trims it (Unicode included), alone and around a value.
SPACE = st.text(st.sampled_from(GO_SPACE), max_size=3)
TEXT = st.one_of(
    st.text(CHARS, max_size=8),
    SPACE,
    st.builds(
        lambda left, core, right: left + core + right, SPACE, st.text(CHARS, max_size=4), SPACE
    ),
    st.sampled_from(["inventory@v1", " planner@v1 ", "\tinf-1\n", "a b", "\u3000a\xa0", "\x1c"]),
)
# Floats only as simple finite quarters: repr() and SQLite may print exponent forms
# (1e+16, 5e-324) differently, which model._scalar_text documents as unsupported.
SIMPLE_FLOATS = st.integers(-4000, 4000).map(lambda n: n / 4)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), SIMPLE_FLOATS, TEXT)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=12,
)
METADATA = st.dictionaries(KEYS, VALUES, max_size=7)

PROPERTY = settings(max_examples=150, deadline=None)


@PROPERTY
@given(metadata=METADATA)
def test_sql_projection_agrees_with_python(
    conn: sqlite3.Connection, metadata: dict[str, Any]
) -> None:
    expected = (True, *python_projection(metadata))
    assert sql_projection(conn, dumps(metadata)) == expected
    # the same metadata inside a snapshot payload, as the migration reads it
    payload = dumps({"id": "t", "blocks": [], "metadata": metadata, "data": {"x": metadata}})
    assert metadata_of_payload(payload) == metadata
    assert sql_projection(conn, payload, payload=True) == expected
    # an encoder that is not ours (key order, spacing) must not change the answer
    assert sql_projection(conn, json.dumps(metadata, indent=1)) == expected


# Runtime objects nested in runtime objects, at and past the depth the projection reads.
RUNTIME_OBJECTS = st.recursive(
    SCALARS,
    lambda inner: st.dictionaries(
        st.sampled_from([*RUNTIME_OBJECT_FIELDS, "noise"]), inner, min_size=1, max_size=4
    ),
    max_leaves=10,
)


@PROPERTY
@given(
    runtimes=st.dictionaries(st.sampled_from(RUNTIME_KEYS), RUNTIME_OBJECTS, min_size=1),
)
def test_sql_projection_agrees_with_python_on_nested_runtime_objects(
    conn: sqlite3.Connection, runtimes: dict[str, Any]
) -> None:
    expected = (True, *python_projection(runtimes))
    assert sql_projection(conn, dumps(runtimes)) == expected
    assert sql_projection(conn, dumps({"metadata": runtimes}), payload=True) == expected


@PROPERTY
@given(value=VALUES)
def test_sql_validity_agrees_with_python_for_any_metadata_shape(
    conn: sqlite3.Connection, value: Any
) -> None:
    payload = dumps({"id": "t", "metadata": value})
    valid, runtime, inference = sql_projection(conn, payload, payload=True)
    metadata = metadata_of_payload(payload)
    assert valid == isinstance(value, dict) == (metadata is not None)
    if valid:
        assert (runtime, inference) == (
            extract_runtime_key(metadata),
            extract_inference_id(metadata),
        )
    assert sql_projection(conn, dumps(value))[0] == isinstance(value, dict)
