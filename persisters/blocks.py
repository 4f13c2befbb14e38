"""Content-addressed blocks: the real store's block hash, and turnsim's turns as its rows.

The real server stores a snapshot as block rows (``blocks``, deduplicated by content) and
one ``turn_block_membership`` row per block and snapshot. This module is the mapping both
ways, pure functions only:

* :func:`content_hash`: the real ``ComputeBlockContentHash`` (algorithm
  :data:`HASH_ALGORITHM`): lowercase hex SHA-256 of ``{"kind","role","payload","metadata"}``
  as Go's ``encoding/json`` writes it (:func:`go_json`).
* :func:`blocks_of_payload`: the block rows of a serialized turn, as the real store
  derives them (block id, or ``<turn id>#<ordinal>`` when a block has none).
* :func:`payload_of_blocks`: a serialized turn rebuilt from block rows and the turn row's
  metadata and data, for a snapshot the real server wrote.

A turnsim block ``{"kind", "text", "data"?}`` becomes a real block of that kind whose
payload is ``{"text": ..., "data": ...}`` (the block minus its envelope fields ``id``,
``kind``, ``role``, ``metadata``) and whose role follows from the kind
(:data:`ROLE_OF_KIND`, geppetto's constructors). :func:`payload_of_blocks` inverts that
exactly, so a turn turnsim wrote comes back byte for byte; a real block keeps every field
(its payload's fields, and ``id``/``role``/``metadata`` where they are not the defaults).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import attrs

from persisters.model import dumps, trim_space

HASH_ALGORITHM = "sha256-canonical-json-v1"

#: The role geppetto's block constructors give each kind ("" for tool calls and results).
ROLE_OF_KIND: dict[str, str] = {"system": "system", "user": "user", "llm_text": "assistant"}

#: A block's own fields; every other field of a turnsim block is its payload.
ENVELOPE: tuple[str, ...] = ("id", "kind", "role", "metadata")
#: Where a payload goes when one of its fields would collide with the envelope.
NESTED_PAYLOAD = "payload"

_SURROGATE = re.compile("[\ud800-\udfff]")
#: What Go escapes in strings beyond JSON's must: for safe embedding in HTML and
#: JavaScript. JSON text can hold these only inside strings, so replacing them in encoded
#: JSON text is exact.
_GO_ESCAPES = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


# ---------------------------------------------------------------------------------------
# Go's encoding/json, as far as the hash needs it


def _go_float(value: float) -> str:
    """A float as Go's encoding/json writes a float64 (shortest digits, 'f' or 'e' form)."""
    if not math.isfinite(value):
        raise ValueError(f"JSON has no {value}")
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    shortest = repr(value)
    if 1e-6 <= abs(value) < 1e21:
        text = format(Decimal(shortest), "f")
        return text[:-2] if text.endswith(".0") else text
    mantissa, exponent = shortest.split("e")
    mantissa = mantissa[:-2] if mantissa.endswith(".0") else mantissa
    sign, digits = exponent[0], exponent[1:].lstrip("0") or "0"
    # Go cleans e-07 up to e-7 but keeps a two-digit positive exponent: 1e+21
    return f"{mantissa}e{sign}{digits.zfill(2) if sign == '+' else digits}"


def _go_value(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        return _html_safe(json.dumps(_SURROGATE.sub("\ufffd", value), ensure_ascii=False))
    if isinstance(value, Mapping):
        # Go sorts map keys by their UTF-8 bytes, which is code point order.
        items = sorted((str(k), v) for k, v in value.items())
        return "{" + ",".join(f"{_go_value(k)}:{_go_value(v)}" for k, v in items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_go_value(v) for v in value) + "]"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def go_json(value: Any) -> str:
    """``value`` as Go's ``json.Marshal`` writes it: no spaces, map keys sorted, HTML-safe.

    Numbers follow Go's float64 formatting for floats and print integers as they are.
    """
    return _go_value(value)


def content_hash(
    kind: str, role: str, payload: Mapping[str, Any], metadata: Mapping[str, Any]
) -> str:
    """The real store's content hash of a block (``sha256-canonical-json-v1``).

    Kind and role are trimmed; a missing payload or metadata counts as ``{}``. The field
    order is fixed (kind, role, payload, metadata); maps inside are key-sorted.
    """
    return _hash(
        go_json(trim_space(kind)),
        go_json(trim_space(role)),
        go_json(payload or {}),
        go_json(metadata or {}),
    )


def _hash(kind: str, role: str, payload: str, metadata: str) -> str:
    """The hash of the material, each part already in Go's JSON."""
    material = f'{{"kind":{kind},"role":{role},"payload":{payload},"metadata":{metadata}}}'
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


@functools.lru_cache(maxsize=256)
def _go_text(text: str) -> str:
    """A short string (a kind, a role) in Go's JSON; they repeat, so they are cached."""
    return _html_safe(dumps(text))


def _html_safe(text: str) -> str:
    """:func:`persisters.model.dumps` output as Go writes it (its string escapes)."""
    for char, escaped in _GO_ESCAPES:
        if char in text:
            text = text.replace(char, escaped)
    return text


# ---------------------------------------------------------------------------------------
# A serialized turn as block rows, and back


@attrs.frozen
class BlockRow:
    """One block of a snapshot as the real tables hold it (``payload_json`` and
    ``metadata_json`` as stored text; ``ordinal`` is its position in the snapshot)."""

    ordinal: int
    block_id: str
    content_hash: str
    kind: str
    role: str
    payload_json: str
    metadata_json: str


def default_block_id(turn_id: str, ordinal: int) -> str:
    """The id the real store gives a block that has none (``normalizeBlockID``)."""
    return f"{trim_space(turn_id)}#{ordinal}"


def _payload_of_block(block: Mapping[str, Any]) -> dict[str, Any]:
    rest = {k: v for k, v in block.items() if k not in ENVELOPE}
    nested = rest.get(NESTED_PAYLOAD)
    if set(rest) == {NESTED_PAYLOAD} and isinstance(nested, Mapping):
        return dict(nested)
    return rest


def blocks_of_payload(turn_id: str, payload: str) -> list[BlockRow]:
    """The block rows of a serialized turn; ``[]`` when it has no list of blocks.

    Entries of ``blocks`` that are not objects are not blocks and are skipped (the
    snapshot's payload keeps them all the same).
    """
    floats = False

    def parse_float(text: str) -> float:
        nonlocal floats
        floats = True
        return float(text)

    try:
        decoded = json.loads(payload, parse_float=parse_float)
    except (ValueError, RecursionError):
        return []
    blocks = decoded.get("blocks") if isinstance(decoded, dict) else None
    if not isinstance(blocks, list):
        return []
    rows = []
    for ordinal, block in enumerate(blocks):
        if not isinstance(block, dict):
            continue
        kind = block.get("kind")
        kind = trim_space(kind) if isinstance(kind, str) else ""
        role = block.get("role")
        role = trim_space(role) if isinstance(role, str) else ROLE_OF_KIND.get(kind, "")
        block_id = block.get("id")
        block_id = trim_space(block_id) if isinstance(block_id, str) else ""
        metadata = block.get("metadata")
        metadata = dict(metadata) if isinstance(metadata, Mapping) else {}
        body = _payload_of_block(block)
        body_json = dumps(body)
        metadata_json = dumps(metadata) if metadata else "{}"
        try:
            # dumps is Go's JSON up to its string escapes when no float needs Go's format
            # and no lone surrogate needs replacing (encoding would refuse it).
            digest = None
            if not floats:
                go_metadata = _html_safe(metadata_json) if metadata else "{}"
                digest = _hash(_go_text(kind), _go_text(role), _html_safe(body_json), go_metadata)
        except UnicodeEncodeError:
            digest = None
        rows.append(
            BlockRow(
                ordinal=ordinal,
                block_id=block_id or default_block_id(turn_id, ordinal),
                content_hash=digest or content_hash(kind, role, body, metadata),
                kind=kind,
                role=role,
                payload_json=body_json,
                metadata_json=metadata_json,
            )
        )
    return rows


def _object(text: Any) -> dict[str, Any] | None:
    """A stored JSON object column, or None when it is not one."""
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def block_of_row(
    turn_id: str,
    ordinal: int,
    block_id: str,
    kind: Any,
    role: Any,
    payload_json: Any,
    metadata_json: Any,
) -> dict[str, Any]:
    """One block of a rebuilt turn, the inverse of :func:`blocks_of_payload`.

    A payload column that is not a JSON object is kept as text under ``payload``.
    """
    kind = kind if isinstance(kind, str) else ""
    block: dict[str, Any] = {"kind": kind}
    body = _object(payload_json)
    if body is None:
        if payload_json not in (None, "", "{}"):
            block[NESTED_PAYLOAD] = payload_json
    elif set(body) & {*ENVELOPE, NESTED_PAYLOAD}:
        block[NESTED_PAYLOAD] = body
    else:
        block.update(body)
    if block_id != default_block_id(turn_id, ordinal):
        block["id"] = block_id
    if isinstance(role, str) and role != ROLE_OF_KIND.get(kind, ""):
        block["role"] = role
    metadata = _object(metadata_json)
    if metadata:
        block["metadata"] = metadata
    elif metadata is None and metadata_json not in (None, ""):
        block["metadata"] = metadata_json
    return block


def payload_of_blocks(
    turn_id: str,
    blocks: Iterable[dict[str, Any]],
    metadata_json: Any,
    data_json: Any,
) -> str:
    """A serialized turn (as :meth:`persisters.model.Turn.serialize` writes one) from its
    blocks and the turn row's metadata and data columns.

    A column that is not a JSON object (missing row, malformed text) becomes ``{}`` for
    ``data`` and is left out for ``metadata``, so the snapshot's metadata counts as
    absent rather than made up; the column itself stays as it is in ``turns``.
    """
    turn: dict[str, Any] = {"id": turn_id, "blocks": list(blocks)}
    metadata = _object(metadata_json)
    if metadata is not None:
        turn["metadata"] = metadata
    turn["data"] = _object(data_json) or {}
    return dumps(turn)
