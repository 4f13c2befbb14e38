"""Value objects of the turn domain and the metadata projection rules.

Everything here is a frozen attrs class or a pure function. The projection functions
(:func:`extract_runtime_key`, :func:`extract_inference_id`) are the single definition of
how a turn's metadata maps onto the ``runtime_key`` / ``inference_id`` columns; the SQL
backfill in :mod:`persisters.schema` implements the same rules and a property test
keeps the two in agreement.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

# Metadata keys (domain.md, "Turn metadata keys").
KEY_SESSION_ID = "geppetto.session_id@v1"
KEY_INFERENCE_ID = "geppetto.inference_id@v1"
KEY_RUNTIME = "geppetto.runtime@v1"
LEGACY_INFERENCE_ID = "inference_id"
LEGACY_RUNTIME = "runtime"
LEGACY_RUNTIME_KEY = "runtime_key"

#: Where the runtime may live, most authoritative first.
RUNTIME_KEYS: tuple[str, ...] = (KEY_RUNTIME, LEGACY_RUNTIME, LEGACY_RUNTIME_KEY)
#: Where the inference id may live, most authoritative first.
INFERENCE_ID_KEYS: tuple[str, ...] = (KEY_INFERENCE_ID, LEGACY_INFERENCE_ID)
#: When the runtime is an object, the fields that may hold it, first present wins.
RUNTIME_OBJECT_FIELDS: tuple[str, ...] = ("runtime_key", "key", "slug", "profile", "profile_key")
#: How many objects deep a runtime may sit: 2 reads ``{"profile": {"slug": "planner"}}``
#: (a field of the runtime object that is itself such an object), as the real extraction
#: did at the cutover; deeper nesting counts as absent. The SQL mirrors this depth.
RUNTIME_OBJECT_DEPTH = 2

#: Whitespace as the real code's ``strings.TrimSpace`` sees it (Go's ``unicode.IsSpace``):
#: the six ASCII ones, NEL, no-break space and the Unicode spaces. Python's ``str.strip()``
#: would also strip U+001C..U+001F, which Go keeps. Ids, phases and projected values are
#: trimmed of exactly these, and the SQL projection trims the same set.
WHITESPACE = (
    " \t\n\r\f\v"
    "\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)

PRE_INFERENCE = "pre_inference"
POST_INFERENCE = "post_inference"
POST_TOOLS = "post_tools"
FINAL = "final"
PHASES: tuple[str, ...] = (PRE_INFERENCE, POST_INFERENCE, POST_TOOLS, FINAL)

BLOCK_KINDS: tuple[str, ...] = ("system", "user", "llm_text", "tool_call", "tool_use")


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def dumps(value: Any) -> str:
    """The project's one JSON encoder: compact, key-sorted, UTF-8 kept as is.

    One module-level encoder: ``json.dumps`` with options builds a new one per call.
    """
    return _ENCODER.encode(value)


def trim_space(value: str) -> str:
    """``value`` without leading and trailing :data:`WHITESPACE` (Go's strings.TrimSpace)."""
    return value.strip(WHITESPACE)


def _scalar_text(value: Any) -> str:
    """Project one JSON value to text; empty string means absent."""
    if value is None:
        return ""
    if isinstance(value, str):
        # SQLite's JSON functions cut strings at NUL: such a value is unusable (absent).
        return "" if "\x00" in value else trim_space(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # Finite floats only appear from JSON; repr matches what SQLite prints for the
        # common cases (1.5, 0.25). Exponent forms are documented as unsupported.
        return repr(value)
    return ""  # lists and objects are not scalars


def _runtime_from_value(value: Any, depth: int = RUNTIME_OBJECT_DEPTH) -> str:
    if isinstance(value, Mapping):
        if depth < 1:
            return ""  # nested deeper than the SQL projection reads
        for field in RUNTIME_OBJECT_FIELDS:
            text = _runtime_from_value(value.get(field), depth - 1)
            if text:
                return text
        return ""
    return _scalar_text(value)


def extract_runtime_key(metadata: Mapping[str, Any] | None) -> str:
    """Runtime key from turn metadata, honouring every alias and shape of domain.md.

    ``geppetto.runtime@v1`` wins over ``runtime``, which wins over ``runtime_key``. Each
    may be a string, a non-string scalar (projected as its text), or an object holding the
    key under the first non-empty of ``runtime_key``, ``key``, ``slug``, ``profile``,
    ``profile_key``; such a field may itself be an object read the same way, one level
    deep (``{"profile": {"slug": "planner"}}`` gives ``planner``, as the real extraction
    read it at the cutover; see :data:`RUNTIME_OBJECT_DEPTH`). Empty or whitespace values
    count as absent. Returns ``""`` when nothing usable is present.
    """
    if not isinstance(metadata, Mapping):
        return ""
    for key in RUNTIME_KEYS:
        text = _runtime_from_value(metadata.get(key))
        if text:
            return text
    return ""


def extract_inference_id(metadata: Mapping[str, Any] | None) -> str:
    """Inference id from turn metadata: ``geppetto.inference_id@v1``, then ``inference_id``.

    Non-string scalars are projected as text; empty or whitespace counts as absent.
    """
    if not isinstance(metadata, Mapping):
        return ""
    for key in INFERENCE_ID_KEYS:
        text = _scalar_text(metadata.get(key))
        if text:
            return text
    return ""


def metadata_of_payload(payload: str) -> dict[str, Any] | None:
    """The ``metadata`` object of a serialized turn, or None when it does not decode."""
    try:
        decoded = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if not isinstance(decoded, dict):
        return None
    metadata = decoded.get("metadata")
    return metadata if isinstance(metadata, dict) else None


def _nonneg(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value}")


def _phase(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if value not in PHASES:
        raise ValueError(f"{attribute.name} must be one of {', '.join(PHASES)}; got {value!r}")


@attrs.frozen
class Block:
    """One ordered block of a turn."""

    kind: str = attrs.field(validator=attrs.validators.in_(BLOCK_KINDS))
    text: str = ""
    data: Mapping[str, Any] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "text": self.text}
        if self.data:
            out["data"] = dict(self.data)
        return out


@attrs.frozen
class Turn:
    """The state of one inference execution: blocks, metadata and data."""

    id: str
    blocks: tuple[Block, ...] = ()
    metadata: Mapping[str, Any] = attrs.field(factory=dict)
    data: Mapping[str, Any] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "blocks": [b.to_json() for b in self.blocks],
            "metadata": dict(self.metadata),
            "data": dict(self.data),
        }

    def serialize(self) -> str:
        """The payload stored with every snapshot of this turn."""
        return dumps(self.to_json())

    def with_blocks(self, *blocks: Block) -> Turn:
        return attrs.evolve(self, blocks=self.blocks + blocks)

    def with_data(self, **data: Any) -> Turn:
        return attrs.evolve(self, data={**self.data, **data})


@attrs.frozen
class TurnSaveOptions:
    """Explicit projection values for one save; empty means "take it from the metadata"."""

    runtime_key: str = ""
    inference_id: str = ""


@attrs.frozen
class TurnSnapshot:
    """One stored snapshot of a turn at one phase."""

    conv_id: str
    session_id: str
    turn_id: str
    phase: str
    runtime_key: str
    inference_id: str
    created_at_ms: int
    payload: str
    snapshot_id: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "conv_id": self.conv_id,
            "session_id": self.session_id,
            "turn_id": self.turn_id,
            "phase": self.phase,
            "runtime_key": self.runtime_key,
            "inference_id": self.inference_id,
            "created_at_ms": self.created_at_ms,
            "payload": self.payload,
        }


@attrs.frozen
class SaveResult:
    """What a save stored: the effective projection and whether it created the turn."""

    snapshot_id: int
    runtime_key: str
    inference_id: str
    created_turn: bool


def _opt_phase(instance: Any, attribute: attrs.Attribute, value: str | None) -> None:
    if value is not None:
        _phase(instance, attribute, value)


MAX_LIMIT = 1_000_000


@attrs.frozen
class TurnQuery:
    """Filters for :meth:`TurnStore.list`; ``None`` means "any". Results come newest first."""

    conv_id: str | None = None
    session_id: str | None = None
    turn_id: str | None = None
    phase: str | None = attrs.field(default=None, validator=_opt_phase)
    runtime_key: str | None = None
    inference_id: str | None = None
    since_ms: int | None = attrs.field(default=None, validator=attrs.validators.optional(_nonneg))
    #: Point in time: only snapshots saved at or before it (the store as it was then).
    as_of_ms: int | None = attrs.field(default=None, validator=attrs.validators.optional(_nonneg))
    limit: int = attrs.field(
        default=100,
        validator=[attrs.validators.ge(1), attrs.validators.le(MAX_LIMIT)],
    )


@attrs.frozen
class ConversationRecord:
    """One row of the conversation index: the current runtime pointer, not history."""

    conv_id: str
    session_id: str
    current_runtime_key: str
    profile_slug: str
    created_at_ms: int
    last_activity_ms: int

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class TurnRecord:
    """One row of the ``turns`` table: the per-turn truth."""

    conv_id: str
    session_id: str
    turn_id: str
    runtime_key: str
    inference_id: str
    created_at_ms: int
    updated_at_ms: int
