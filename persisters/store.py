"""The TurnStore and ConversationIndex contracts, and the rules every implementation shares.

A store is async; every implementation runs the same contract suite
(``tests/test_store_contract.py``). The rules that decide *what* a save stores live here
as plain functions so that every implementation applies them identically:

* :func:`resolve_projection`: explicit option values win, the payload's metadata fills
  what is empty (rule 5).
* :func:`refuse_rewrite`: the write-once rule (rule 4) and the empty-runtime rule (rule 8).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from persisters.errors import EmptyRuntimeError, InvalidSaveError, TurnRewriteError
from persisters.model import (
    PHASES,
    WHITESPACE,
    ConversationRecord,
    SaveResult,
    TurnQuery,
    TurnRecord,
    TurnSaveOptions,
    TurnSnapshot,
    extract_inference_id,
    extract_runtime_key,
    metadata_of_payload,
)


@runtime_checkable
class TurnStore(Protocol):
    """Append-only store of turn snapshots with a write-once per-turn projection."""

    async def save(
        self,
        conv_id: str,
        session_id: str,
        turn_id: str,
        phase: str,
        created_at_ms: int,
        payload: str,
        options: TurnSaveOptions = ...,
    ) -> SaveResult:
        """Store one snapshot. Raises a :class:`sim.errors.StoreError` subclass on refusal."""
        ...

    async def list(self, query: TurnQuery) -> list[TurnSnapshot]:
        """Snapshots matching every given filter, newest first (ties: newest saved first)."""
        ...

    async def load_latest_turn(self, conv_id: str, phase: str) -> TurnSnapshot | None:
        """The newest snapshot of ``conv_id`` at ``phase``, or None."""
        ...

    async def get_turn(self, conv_id: str, session_id: str, turn_id: str) -> TurnRecord | None:
        """The per-turn row (runtime and inference id as recorded), or None."""
        ...

    async def list_turns(self, conv_id: str) -> list[TurnRecord]:
        """Every turn of a conversation, oldest first (ties keep first-save order)."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class ConversationIndex(Protocol):
    """One row per conversation holding the *current* runtime pointer (never history)."""

    async def set_current_runtime(
        self, conv_id: str, session_id: str, runtime_key: str, profile_slug: str, at_ms: int
    ) -> ConversationRecord:
        """Create or update the row; ``runtime_key`` may be ``""`` to clear the pointer."""
        ...

    async def touch(self, conv_id: str, at_ms: int) -> None:
        """Record activity on an existing conversation."""
        ...

    async def get(self, conv_id: str) -> ConversationRecord | None: ...

    async def list(self) -> list[ConversationRecord]:
        """Every conversation, ordered by ``conv_id``."""
        ...


def clean(value: str) -> str:
    return value.strip(WHITESPACE)


def validate_save_args(
    conv_id: str, session_id: str, turn_id: str, phase: str, created_at_ms: int
) -> None:
    """Refuse arguments no store can record meaningfully."""
    if not clean(conv_id):
        raise InvalidSaveError("save refused: conv_id is empty")
    if not clean(turn_id):
        raise InvalidSaveError(
            f"save refused: turn_id is empty for conversation {conv_id!r}; every inference "
            "needs a fresh, non-empty turn id (a constant default would merge distinct turns)"
        )
    if phase not in PHASES:
        raise InvalidSaveError(
            f"save refused: unknown phase {phase!r}; expected one of {', '.join(PHASES)}"
        )
    if created_at_ms < 0:
        raise InvalidSaveError(f"save refused: created_at_ms must be >= 0, got {created_at_ms}")


def resolve_projection(payload: str, options: TurnSaveOptions) -> tuple[str, str]:
    """The (runtime_key, inference_id) a save carries: explicit values, else metadata."""
    runtime_key = clean(options.runtime_key)
    inference_id = clean(options.inference_id)
    if not runtime_key or not inference_id:
        metadata = metadata_of_payload(payload)
        if not runtime_key:
            runtime_key = extract_runtime_key(metadata)
        if not inference_id:
            inference_id = extract_inference_id(metadata)
    return runtime_key, inference_id


#: Decides the projection a save stores, given the turn's stored values (None for a new
#: turn). Returns the effective (runtime_key, inference_id) or raises.
ConflictPolicy = Callable[
    [str, str, str, "tuple[str, str] | None", "tuple[str, str]"], "tuple[str, str]"
]


def refuse_rewrite(
    conv_id: str,
    session_id: str,
    turn_id: str,
    stored: tuple[str, str] | None,
    carried: tuple[str, str],
) -> tuple[str, str]:
    """Rules 4 and 8: a new turn needs a runtime; a recorded non-empty value never changes."""
    runtime_key, inference_id = carried
    if stored is None:
        if not runtime_key:
            raise EmptyRuntimeError(
                f"save refused: new turn {conv_id}/{session_id}/{turn_id} has no runtime key "
                "(none passed and none in metadata key 'geppetto.runtime@v1'); pass "
                "TurnSaveOptions(runtime_key=...) with the runtime bound at inference start"
            )
        return runtime_key, inference_id
    effective = []
    for field, old, new in (
        ("runtime_key", stored[0], runtime_key),
        ("inference_id", stored[1], inference_id),
    ):
        if old and new and old != new:
            raise TurnRewriteError(conv_id, session_id, turn_id, field, old, new)
        effective.append(old or new)
    return effective[0], effective[1]


def new_value_wins(
    conv_id: str,
    session_id: str,
    turn_id: str,
    stored: tuple[str, str] | None,
    carried: tuple[str, str],
) -> tuple[str, str]:
    """BUG VARIANT ``upsert-overwrite``: the old upsert, where a new non-empty value won."""
    if stored is None:
        return refuse_rewrite(conv_id, session_id, turn_id, stored, carried)
    return carried[0] or stored[0], carried[1] or stored[1]


def matches(snapshot: TurnSnapshot, query: TurnQuery) -> bool:
    """Whether a snapshot passes every filter of a query (the reference semantics)."""
    return (
        (query.conv_id is None or snapshot.conv_id == query.conv_id)
        and (query.session_id is None or snapshot.session_id == query.session_id)
        and (query.turn_id is None or snapshot.turn_id == query.turn_id)
        and (query.phase is None or snapshot.phase == query.phase)
        and (query.runtime_key is None or snapshot.runtime_key == query.runtime_key)
        and (query.inference_id is None or snapshot.inference_id == query.inference_id)
        and (query.since_ms is None or snapshot.created_at_ms >= query.since_ms)
    )
