"""In-memory TurnStore and ConversationIndex: the reference implementation of the contract.

It has no group commit (``group_commit`` is None): each write is applied when it is
awaited.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import attrs

from persisters.errors import PermanentStoreError, StoreError
from persisters.model import (
    ConversationRecord,
    SaveResult,
    TurnQuery,
    TurnRecord,
    TurnSaveOptions,
    TurnSnapshot,
)
from persisters.store import (
    ConflictPolicy,
    latest_turn_query,
    matches,
    refuse_rewrite,
    resolve_projection,
    validate_save_args,
)

#: What a write to a store made read-only raises (SQLite's words, which scenarios match).
READ_ONLY_MESSAGE = "memory store: attempt to write a readonly database"


class MemoryConversationIndex:
    """Conversation pointers held in a dict."""

    def __init__(self) -> None:
        self._rows: dict[str, ConversationRecord] = {}
        #: Set by :meth:`MemoryTurnStore.make_read_only`: every later write is refused.
        self.read_only = False

    def _check_writable(self) -> None:
        if self.read_only:
            raise PermanentStoreError(READ_ONLY_MESSAGE)

    async def set_current_runtime(
        self, conv_id: str, session_id: str, runtime_key: str, profile_slug: str, at_ms: int
    ) -> ConversationRecord:
        self._check_writable()
        old = self._rows.get(conv_id)
        record = ConversationRecord(
            conv_id=conv_id,
            session_id=session_id,
            current_runtime_key=runtime_key,
            profile_slug=profile_slug,
            created_at_ms=old.created_at_ms if old else at_ms,
            last_activity_ms=max(at_ms, old.last_activity_ms) if old else at_ms,
        )
        self._rows[conv_id] = record
        return record

    async def touch(self, conv_id: str, at_ms: int) -> None:
        self._check_writable()
        old = self._rows.get(conv_id)
        if old is not None and at_ms > old.last_activity_ms:
            self._rows[conv_id] = attrs.evolve(old, last_activity_ms=at_ms)

    async def get(self, conv_id: str) -> ConversationRecord | None:
        return self._rows.get(conv_id)

    async def list(self) -> list[ConversationRecord]:
        return [self._rows[k] for k in sorted(self._rows)]


class MemoryTurnStore:
    """Keeps turns and snapshots in lists; same contract as the SQLite store."""

    def __init__(self, *, on_conflict: ConflictPolicy = refuse_rewrite) -> None:
        self._on_conflict = on_conflict
        self._turns: dict[tuple[str, str, str], TurnRecord] = {}
        self._snapshots: list[TurnSnapshot] = []
        self.conversations = MemoryConversationIndex()
        self.group_commit: None = None  # no group commit: each write applies when awaited
        self.read_only = False
        self.closed = False

    async def __aenter__(self) -> MemoryTurnStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def save(
        self,
        conv_id: str,
        session_id: str,
        turn_id: str,
        phase: str,
        created_at_ms: int,
        payload: str,
        options: TurnSaveOptions = TurnSaveOptions(),  # noqa: B008 (frozen value)
    ) -> SaveResult:
        if self.closed:
            raise StoreError("memory store is closed")
        validate_save_args(conv_id, session_id, turn_id, phase, created_at_ms)
        if self.read_only:
            raise PermanentStoreError(READ_ONLY_MESSAGE)
        key = (conv_id, session_id, turn_id)
        carried = resolve_projection(payload, options)
        old = self._turns.get(key)
        stored = None if old is None else (old.runtime_key, old.inference_id)
        runtime_key, inference_id = self._on_conflict(conv_id, session_id, turn_id, stored, carried)
        self._turns[key] = TurnRecord(
            conv_id=conv_id,
            session_id=session_id,
            turn_id=turn_id,
            runtime_key=runtime_key,
            inference_id=inference_id,
            created_at_ms=old.created_at_ms if old else created_at_ms,
            updated_at_ms=max(created_at_ms, old.updated_at_ms) if old else created_at_ms,
        )
        snapshot = TurnSnapshot(
            conv_id=conv_id,
            session_id=session_id,
            turn_id=turn_id,
            phase=phase,
            runtime_key=runtime_key,
            inference_id=inference_id,
            created_at_ms=created_at_ms,
            payload=payload,
            snapshot_id=len(self._snapshots) + 1,
        )
        self._snapshots.append(snapshot)
        return SaveResult(snapshot.snapshot_id, runtime_key, inference_id, old is None)

    async def list(self, query: TurnQuery) -> list[TurnSnapshot]:
        found = [s for s in self._snapshots if matches(s, query)]
        found.sort(key=lambda s: (s.created_at_ms, s.snapshot_id), reverse=True)
        return found[: query.limit]

    async def list_rows(self, query: TurnQuery) -> list[tuple[Any, ...]]:
        return [attrs.astuple(s, recurse=False) for s in await self.list(query)]

    async def load_latest_turn(self, conv_id: str, phase: str) -> TurnSnapshot | None:
        found = await self.list(latest_turn_query(conv_id, phase))
        return found[0] if found else None

    async def get_turn(self, conv_id: str, session_id: str, turn_id: str) -> TurnRecord | None:
        return self._turns.get((conv_id, session_id, turn_id))

    async def list_turns(self, conv_id: str) -> list[TurnRecord]:
        turns = [t for t in self._turns.values() if t.conv_id == conv_id]
        turns.sort(key=lambda t: t.created_at_ms)  # stable: ties keep first-save order
        return turns

    async def turn_counts(self) -> dict[str, int]:
        """Number of turns per conversation (conversations with no turn are absent)."""
        return dict(Counter(conv_id for conv_id, _, _ in self._turns))

    async def make_read_only(self) -> None:
        """Refuse every later write, as :meth:`SQLiteTurnStore.make_read_only` does."""
        self.read_only = self.conversations.read_only = True

    async def close(self) -> None:
        self.closed = True
