"""The store contract (TurnStore, ConversationIndex, WriteQueue) and the rules it shares.

This module is the plug point for a store of one's own: the simulator, the scenario
runner, the debug API and the CLI use a store only through the members of
:class:`TurnStore` (and its :class:`ConversationIndex` and optional :class:`WriteQueue`),
and each docstring below says what an implementation must do. Every built-in store (in
memory, SQLite) implements all of it, and ``tests/persisters/test_store_contract.py``,
the executable form of these docstrings, runs against each: a new store joins by adding a
param to its ``make_store`` fixture.

The rules that decide *what* a save stores live here as plain functions so that every
implementation applies them identically:

* :func:`validate_save_args`: arguments no store can record (empty ids, unknown phase).
* :func:`resolve_projection`: explicit option values win, the payload's metadata fills
  what is empty (rule 5).
* :func:`refuse_rewrite`: the write-once rule (rule 4) and the empty-runtime rule (rule 8);
  a store takes it as its :data:`ConflictPolicy` (the ``upsert-overwrite`` bug variant
  passes :func:`new_value_wins` instead).
* :func:`matches`: the reference semantics of a :class:`TurnQuery`'s filters;
  :func:`latest_turn_query`: what ``load_latest_turn`` asks for (``""``: any phase).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

from persisters.errors import EmptyRuntimeError, InvalidSaveError, TurnRewriteError
from persisters.model import (
    PHASES,
    ConversationRecord,
    SaveResult,
    TurnQuery,
    TurnRecord,
    TurnSaveOptions,
    TurnSnapshot,
    extract_inference_id,
    extract_runtime_key,
    metadata_of_payload,
    trim_space,
)

T_co = TypeVar("T_co", covariant=True)


@runtime_checkable
class ConversationIndex(Protocol):
    """One row per conversation holding the *current* runtime pointer (never history).

    Writes raise :class:`~persisters.errors.StoreError` subclasses like
    :meth:`TurnStore.save` does (transient ones may succeed when retried).
    """

    async def set_current_runtime(
        self, conv_id: str, session_id: str, runtime_key: str, profile_slug: str, at_ms: int
    ) -> ConversationRecord:
        """Create or update the row of ``conv_id`` and return it as stored.

        ``session_id``, ``current_runtime_key`` (``runtime_key``) and ``profile_slug`` take
        the given values, ``""`` included: the newest call wins and ``""`` clears the
        pointer. ``created_at_ms`` is the ``at_ms`` of the row's first call;
        ``last_activity_ms`` becomes ``max(last_activity_ms, at_ms)``.
        """
        ...

    async def touch(self, conv_id: str, at_ms: int) -> None:
        """Record activity: ``last_activity_ms = max(last_activity_ms, at_ms)``.

        A conversation without a row is left without one (no error).
        """
        ...

    async def get(self, conv_id: str) -> ConversationRecord | None:
        """The row of ``conv_id``, or None."""
        ...

    async def list(self) -> list[ConversationRecord]:
        """Every row, ordered by ``conv_id``."""
        ...


class QueuedWrite(Protocol[T_co]):
    """A write queued on a :class:`WriteQueue`, committed by a later flush."""

    def outcome(self) -> T_co:
        """The write's result, or raise its error.

        Call only once a :meth:`WriteQueue.flush` that started after the write was queued
        has returned. The result or error is exactly what the awaited method would have
        returned or raised.
        """
        ...


@runtime_checkable
class WriteQueue(Protocol):
    """A store's group commit, for a driver that decides when to commit.

    The simulation kernel queues all the writes of one virtual instant with the
    ``enqueue_*`` methods, calls :meth:`flush` once, then reads each write's
    :meth:`QueuedWrite.outcome`; so a virtual instant's writes reach the store together,
    as concurrent callers' would. An implementation must keep these rules:

    * ``enqueue_*`` never waits. It may raise at once only what the awaited method
      raises before touching storage (:func:`validate_save_args` for a save).
    * The writes of a flush are applied in the order they were queued, across all three
      kinds, and each write's outcome is what the awaited method (:meth:`TurnStore.save`,
      :meth:`ConversationIndex.set_current_runtime`, :meth:`ConversationIndex.touch`)
      would have given for that order. A refused write (:class:`~persisters.errors.
      TurnRewriteError`, ...) fails alone and writes nothing; a storage failure may fail
      every write committed with it, each with that error.
    * Once :meth:`flush` returned, every write queued before it is visible to reads.
    """

    def enqueue_save(
        self,
        conv_id: str,
        session_id: str,
        turn_id: str,
        phase: str,
        created_at_ms: int,
        payload: str,
        options: TurnSaveOptions = ...,
    ) -> QueuedWrite[SaveResult]:
        """Queue :meth:`TurnStore.save` with these arguments."""
        ...

    def enqueue_set_current_runtime(
        self, conv_id: str, session_id: str, runtime_key: str, profile_slug: str, at_ms: int
    ) -> QueuedWrite[ConversationRecord]:
        """Queue :meth:`ConversationIndex.set_current_runtime` with these arguments."""
        ...

    def enqueue_touch(self, conv_id: str, at_ms: int) -> QueuedWrite[None]:
        """Queue :meth:`ConversationIndex.touch` with these arguments."""
        ...

    async def flush(self) -> None:
        """Commit every write queued before this call; return once each has its outcome.

        Never raises for a write's failure (that is the write's outcome). Calling it with
        nothing queued is harmless.
        """
        ...


@runtime_checkable
class TurnStore(Protocol):
    """Append-only store of turn snapshots with a write-once per-turn projection.

    Every method is a coroutine, safe to call concurrently from one event loop (asyncio
    or trio). Failures are :class:`~persisters.errors.StoreError` subclasses:
    :class:`~persisters.errors.TransientStoreError` when a retry may succeed (the save
    pipelines retry those), :class:`~persisters.errors.PermanentStoreError` otherwise.
    """

    @property
    def conversations(self) -> ConversationIndex:
        """The store's conversation index; one object for the store's lifetime."""
        ...

    @property
    def group_commit(self) -> WriteQueue | None:
        """The store's group commit, or None for a store without one.

        None: writers await :meth:`save` and the index's writes one by one (the simulation
        runs each call as its own I/O). A :class:`WriteQueue`: the simulation queues each
        virtual instant's writes on it and flushes once. Either way the stored result is
        the same. One object for the store's lifetime (it is flushed once per instant).
        """
        ...

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
        """Store one snapshot of a turn and return what was recorded.

        In order: refuse unusable arguments (:func:`validate_save_args`); take the
        projection the save carries (:func:`resolve_projection`: explicit ``options``
        win, the payload's metadata fills what is empty); decide the turn's effective
        (runtime_key, inference_id) with the store's :data:`ConflictPolicy` (by default
        :func:`refuse_rewrite`: a new turn needs a runtime, a recorded non-empty value
        never changes); then create or update the turn row (``created_at_ms`` of its first
        save, ``updated_at_ms`` the newest) and *append* the snapshot, never replacing one
        (two saves of one phase in one millisecond both stay). A refused save raises and
        changes nothing. The result's ``snapshot_id`` is greater than every earlier one's.
        """
        ...

    async def list(self, query: TurnQuery) -> list[TurnSnapshot]:
        """Snapshots passing every filter of ``query`` (see :func:`matches`), newest first.

        Ordered by ``created_at_ms`` descending, ties by ``snapshot_id`` descending (the
        later save first); at most ``query.limit``. Each carries the turn's projection as
        it was recorded by that save.
        """
        ...

    async def list_rows(self, query: TurnQuery) -> list[tuple[Any, ...]]:
        """What :meth:`list` returns, as plain tuples in :class:`TurnSnapshot` field order.

        ``(conv_id, session_id, turn_id, phase, runtime_key, inference_id, created_at_ms,
        payload, snapshot_id)``, ``payload`` as text. For readers that render rows
        straight away (the debug API's ``/turns``); a store may build it from :meth:`list`.
        """
        ...

    async def load_latest_turn(self, conv_id: str, phase: str) -> TurnSnapshot | None:
        """The first snapshot :meth:`list` gives for ``conv_id`` at ``phase``, or None.

        ``phase`` is trimmed; ``""`` means any phase (the latest snapshot of the
        conversation), as the real store defines it. See :func:`latest_turn_query`.
        """
        ...

    async def get_turn(
        self, conv_id: str, session_id: str, turn_id: str, *, as_of_ms: int | None = None
    ) -> TurnRecord | None:
        """The per-turn row (runtime and inference id as recorded), or None.

        With ``as_of_ms``: the turn as it was then, derived from its snapshots
        (:func:`persisters.as_of.get_turn_as_of`).
        """
        ...

    async def list_turns(self, conv_id: str, *, as_of_ms: int | None = None) -> list[TurnRecord]:
        """Every turn of a conversation, oldest first (ties keep first-save order).

        With ``as_of_ms``: the turns as they were then (:func:`persisters.as_of.
        list_turns_as_of`).
        """
        ...

    async def turn_counts(self) -> dict[str, int]:
        """Number of turns (not snapshots) per conversation, for every conversation that
        has one; a conversation with no turn is absent. One call for the debug API's
        ``/conversations``, equal to ``len(await list_turns(conv_id))`` for each."""
        ...

    async def make_read_only(self) -> None:
        """From now on refuse every write, as a database file that turned read-only does.

        A fault to inject (the scenario step ``make_readonly``). Later saves and
        index writes (queued ones included) fail with a
        :class:`~persisters.errors.PermanentStoreError` whose message contains
        ``readonly``; reads keep working. There is no way back for this store object.
        """
        ...

    async def close(self) -> None:
        """Release the store. Later writes raise :class:`~persisters.errors.StoreError`;
        closing twice is harmless."""
        ...


def validate_save_args(
    conv_id: str, session_id: str, turn_id: str, phase: str, created_at_ms: int
) -> None:
    """Refuse arguments no store can record meaningfully.

    Empty means empty once trimmed of :data:`~persisters.model.WHITESPACE`, as the real
    store's ``strings.TrimSpace`` checks: conversation, session and turn ids.
    """
    if not trim_space(conv_id):
        raise InvalidSaveError("save refused: conv_id is empty")
    if not trim_space(session_id):
        raise InvalidSaveError(
            f"save refused: session_id is empty for conversation {conv_id!r}; every turn "
            "belongs to a session (the turn's key and the debug API's path need it)"
        )
    if not trim_space(turn_id):
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
    runtime_key = trim_space(options.runtime_key)
    inference_id = trim_space(options.inference_id)
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


def latest_turn_query(conv_id: str, phase: str) -> TurnQuery:
    """The query :meth:`TurnStore.load_latest_turn` answers: ``phase`` trimmed, ``""`` any."""
    return TurnQuery(conv_id=conv_id, phase=trim_space(phase) or None, limit=1)


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
        and (query.as_of_ms is None or snapshot.created_at_ms <= query.as_of_ms)
    )
