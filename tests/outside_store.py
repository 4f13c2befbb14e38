"""A TurnStore written outside the package, as a user would write one: the plug point's test.

Nothing here is turnsim's own store code: a journal of snapshots in a list, the turn rows
and pointers in dicts, built only on the public contract (``persisters.store``: the
Protocol and the rule helpers every store applies). ``turnsim run --store
tests.outside_store:journal_store`` runs the scenario suite on it, ``turnsim conformance
tests.outside_store:journal_store`` checks it rule by rule, and the contract suite runs on
it through the kit (``tests/persisters/test_outside_store.py``).

``forgetful_store`` is the same store with the old upsert ("a new non-empty value wins")
built in, whatever policy it is asked for: the kit must catch it (write-once broken).
"""

from __future__ import annotations

from typing import Any

import attrs

from persisters.as_of import get_turn_as_of, list_turns_as_of
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
    matches,
    new_value_wins,
    refuse_rewrite,
    resolve_projection,
    validate_save_args,
)

READ_ONLY = "journal store: attempt to write a readonly database"


class JournalIndex:
    def __init__(self, store: JournalStore) -> None:
        self._store = store
        self._rows: dict[str, ConversationRecord] = {}

    async def set_current_runtime(
        self, conv_id: str, session_id: str, runtime_key: str, profile_slug: str, at_ms: int
    ) -> ConversationRecord:
        self._store.check_writable()
        old = self._rows.get(conv_id)
        self._rows[conv_id] = ConversationRecord(
            conv_id,
            session_id,
            runtime_key,
            profile_slug,
            old.created_at_ms if old else at_ms,
            max(at_ms, old.last_activity_ms) if old else at_ms,
        )
        return self._rows[conv_id]

    async def touch(self, conv_id: str, at_ms: int) -> None:
        self._store.check_writable()
        old = self._rows.get(conv_id)
        if old is not None:
            self._rows[conv_id] = attrs.evolve(
                old, last_activity_ms=max(at_ms, old.last_activity_ms)
            )

    async def get(self, conv_id: str) -> ConversationRecord | None:
        return self._rows.get(conv_id)

    async def list(self) -> list[ConversationRecord]:
        return sorted(self._rows.values(), key=lambda r: r.conv_id)


class JournalStore:
    """Snapshots appended to a journal; turn rows derived as saves arrive."""

    group_commit = None  # every write is applied when awaited

    def __init__(self, on_conflict: ConflictPolicy) -> None:
        self._on_conflict = on_conflict
        self._journal: list[TurnSnapshot] = []
        self._turns: dict[tuple[str, str, str], TurnRecord] = {}
        self._read_only = False
        self._closed = False
        self.conversations = JournalIndex(self)

    def check_writable(self) -> None:
        if self._closed:
            raise StoreError("journal store is closed")
        if self._read_only:
            raise PermanentStoreError(READ_ONLY)

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
        self.check_writable()
        key = (conv_id, session_id, turn_id)
        old = self._turns.get(key)
        stored = (old.runtime_key, old.inference_id) if old else None
        runtime_key, inference_id = self._on_conflict(
            *key, stored, resolve_projection(payload, options)
        )
        self._turns[key] = TurnRecord(
            *key,
            runtime_key,
            inference_id,
            old.created_at_ms if old else created_at_ms,
            max(created_at_ms, old.updated_at_ms) if old else created_at_ms,
        )
        snapshot_id = len(self._journal) + 1
        self._journal.append(
            TurnSnapshot(
                *key[:3], phase, runtime_key, inference_id, created_at_ms, payload, snapshot_id
            )
        )
        return SaveResult(snapshot_id, runtime_key, inference_id, old is None)

    async def list(self, query: TurnQuery) -> list[TurnSnapshot]:
        found = [s for s in reversed(self._journal) if matches(s, query)]
        found.sort(key=lambda s: s.created_at_ms, reverse=True)  # stable: later save first
        return found[: query.limit]

    async def list_rows(self, query: TurnQuery) -> list[tuple[Any, ...]]:
        return [attrs.astuple(s, recurse=False) for s in await self.list(query)]

    async def load_latest_turn(self, conv_id: str, phase: str) -> TurnSnapshot | None:
        found = await self.list(TurnQuery(conv_id=conv_id, phase=phase, limit=1))
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
        return sorted(turns, key=lambda t: t.created_at_ms)

    async def turn_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for conv_id, _, _ in self._turns:
            counts[conv_id] = counts.get(conv_id, 0) + 1
        return counts

    async def make_read_only(self) -> None:
        self._read_only = True

    async def close(self) -> None:
        self._closed = True


def journal_store(on_conflict: ConflictPolicy = refuse_rewrite) -> JournalStore:
    """The factory ``--store tests.outside_store:journal_store`` calls per fresh store."""
    return JournalStore(on_conflict)


async def forgetful_store(on_conflict: ConflictPolicy = refuse_rewrite) -> JournalStore:
    """A broken store (an async factory, to show those work too): it ignores the policy
    it is given and lets a new non-empty value win, as the real system's upsert did."""
    return JournalStore(new_value_wins)
