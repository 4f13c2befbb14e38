"""In-memory TurnStore and ConversationIndex: the reference implementation of the contract.

Its ``group_commit`` is a :class:`MemoryWriteQueue`: queued writes are applied at the
flush, in the order they were queued, exactly as the SQLite store's group commit applies
them. So the simulation drives both stores the same way (one flush per virtual instant)
and a run's history does not depend on the store, nor on the order in which an event loop
would have run concurrent awaited writes (trio's is not the order they were started in).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import attrs

from persisters.as_of import get_turn_as_of, list_turns_as_of
from persisters.errors import READ_ONLY_REFUSAL, PermanentStoreError, StoreError
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


class MemoryConversationIndex:
    """Conversation pointers held in a dict."""

    def __init__(self) -> None:
        self._rows: dict[str, ConversationRecord] = {}
        #: Set by :meth:`MemoryTurnStore.make_read_only`: every later write is refused.
        self.read_only = False

    def _check_writable(self) -> None:
        if self.read_only:
            raise PermanentStoreError(READ_ONLY_REFUSAL)

    async def set_current_runtime(
        self, conv_id: str, session_id: str, runtime_key: str, profile_slug: str, at_ms: int
    ) -> ConversationRecord:
        return self.set_now(conv_id, session_id, runtime_key, profile_slug, at_ms)

    def set_now(
        self, conv_id: str, session_id: str, runtime_key: str, profile_slug: str, at_ms: int
    ) -> ConversationRecord:
        """:meth:`set_current_runtime`, applied at once (no await)."""
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
        self.touch_now(conv_id, at_ms)

    def touch_now(self, conv_id: str, at_ms: int) -> None:
        """:meth:`touch`, applied at once (no await)."""
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
        self.group_commit = MemoryWriteQueue(self)
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
        validate_save_args(conv_id, session_id, turn_id, phase, created_at_ms)
        return self.save_now(conv_id, session_id, turn_id, phase, created_at_ms, payload, options)

    def save_now(
        self,
        conv_id: str,
        session_id: str,
        turn_id: str,
        phase: str,
        created_at_ms: int,
        payload: str,
        options: TurnSaveOptions,
    ) -> SaveResult:
        """:meth:`save` of validated arguments, applied at once (no await)."""
        if self.closed:
            raise StoreError("memory store is closed")
        if self.read_only:
            raise PermanentStoreError(READ_ONLY_REFUSAL)
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

    async def get_turn(
        self, conv_id: str, session_id: str, turn_id: str, *, as_of_ms: int | None = None
    ) -> TurnRecord | None:
        if as_of_ms is not None:
            return await get_turn_as_of(self, conv_id, session_id, turn_id, as_of_ms)
        return self._turns.get((conv_id, session_id, turn_id))

    async def list_turns(self, conv_id: str, *, as_of_ms: int | None = None) -> list[TurnRecord]:
        if as_of_ms is not None:
            return await list_turns_as_of(self, conv_id, as_of_ms)
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


class MemoryQueuedWrite:
    """A write queued on a :class:`MemoryWriteQueue`; its outcome is set by the flush."""

    __slots__ = ("args", "error", "fn", "result")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.result: Any = None
        self.error: StoreError | None = None

    def outcome(self) -> Any:
        """The write's result, or raise its error (once a later flush returned)."""
        if self.error is not None:
            raise self.error
        return self.result


class MemoryWriteQueue:
    """The memory store's :class:`~persisters.store.WriteQueue`: writes queued, then
    applied one by one in queue order by :meth:`flush` (a refused write fails alone)."""

    def __init__(self, store: MemoryTurnStore) -> None:
        self._store = store
        self._queued: list[MemoryQueuedWrite] = []

    def _enqueue(self, fn: Callable[..., Any], *args: Any) -> MemoryQueuedWrite:
        op = MemoryQueuedWrite(fn, args)
        self._queued.append(op)
        return op

    def enqueue_save(
        self,
        conv_id: str,
        session_id: str,
        turn_id: str,
        phase: str,
        created_at_ms: int,
        payload: str,
        options: TurnSaveOptions = TurnSaveOptions(),  # noqa: B008 (frozen value)
    ) -> MemoryQueuedWrite:
        """Queue a save; arguments no store can record are refused now."""
        validate_save_args(conv_id, session_id, turn_id, phase, created_at_ms)
        return self._enqueue(
            self._store.save_now,
            conv_id,
            session_id,
            turn_id,
            phase,
            created_at_ms,
            payload,
            options,
        )

    def enqueue_set_current_runtime(
        self, conv_id: str, session_id: str, runtime_key: str, profile_slug: str, at_ms: int
    ) -> MemoryQueuedWrite:
        """Queue a pointer update."""
        return self._enqueue(
            self._store.conversations.set_now, conv_id, session_id, runtime_key, profile_slug, at_ms
        )

    def enqueue_touch(self, conv_id: str, at_ms: int) -> MemoryQueuedWrite:
        """Queue an activity update."""
        return self._enqueue(self._store.conversations.touch_now, conv_id, at_ms)

    async def flush(self) -> None:
        """Apply every queued write in order; each keeps its own result or error."""
        queued, self._queued = self._queued, []
        for op in queued:
            try:
                op.result = op.fn(*op.args)
            except StoreError as exc:
                op.error = exc
