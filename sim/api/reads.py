"""What the debug API reads from a store, shared by its JSON endpoints and its web pages.

:class:`DebugReads` answers "the conversations", "one conversation" and "one turn" as
values (JSON-ready dicts, or :class:`ConversationView` for a page that draws each turn).
The JSON endpoints (:mod:`sim.api.app`) and the HTML pages (:mod:`sim.api.ui`) both call
it, so a page can never show a runtime the API would not: every runtime goes through the
same :class:`~persisters.readpath.ReadPath` (rule 2 by default; the ``pointer-as-history``
variant's path reproduces the old bug on both).

Nothing here knows HTTP.

The command line (``turnsim turns``, ``turnsim history``) reads through :func:`turn_rows`
and :func:`conversation_detail`, so a command's ``--json`` is the endpoint's body, byte for
byte.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs

from persisters.model import MAX_LIMIT, ConversationRecord, TurnQuery, TurnRecord, TurnSnapshot
from persisters.readpath import ReadPath
from persisters.store import ConversationIndex, TurnStore
from sim.api.typed import keep_sound, typed_conversation, typed_snapshot, typed_turn
from sim.api.views import (
    conversation_json,
    item_row,
    phase_json,
    runtime_history,
    shows_stored_runtime,
    turn_runtime,
)


def turn_counter(
    store: TurnStore,
) -> Callable[[Sequence[ConversationRecord]], Awaitable[Mapping[str, int]]]:
    """How ``/conversations`` counts turns: one ``turn_counts`` call answers for every
    conversation (one with no turn is absent)."""

    async def count(records: Sequence[ConversationRecord]) -> Mapping[str, int]:
        return await store.turn_counts()

    return count


@attrs.frozen
class ConversationView:
    """One conversation with its turns (oldest first) and the runtime each turn shows."""

    record: ConversationRecord
    turns: tuple[TurnRecord, ...]
    #: The runtime the read path shows for each turn, in ``turns`` order.
    runtimes: tuple[str, ...]
    #: ``runtime_history`` of ``/conversations/{conv_id}``: consecutive turns by runtime.
    history: tuple[dict[str, Any], ...]

    def to_json(self) -> dict[str, Any]:
        """The body of ``GET /conversations/{conv_id}``."""
        body = conversation_json(self.record, len(self.turns))
        body["runtime_history"] = [dict(span) for span in self.history]
        return body


class DebugReads:
    """The store reads behind the debug API, over one store and one read path."""

    def __init__(self, store: TurnStore, read_path: ReadPath) -> None:
        self.store = store
        self.conversations: ConversationIndex = store.conversations
        self.read_path = read_path
        #: The per-turn read path needs no conversation records and no per-snapshot view.
        self.stored_runtime = shows_stored_runtime(read_path)
        self.count_turns = turn_counter(store)

    async def conversation_list(self) -> list[dict[str, Any]]:
        """The items of ``GET /conversations``, ordered by ``conv_id``."""
        records = keep_sound(await self.conversations.list(), typed_conversation, "conversations")
        counts = await self.count_turns(records)
        return [conversation_json(r, counts.get(r.conv_id, 0)) for r in records]

    async def conversation(
        self, conv_id: str, *, as_of_ms: int | None = None
    ) -> ConversationView | None:
        """One conversation and its turns, or None when the index does not know it.

        ``as_of_ms``: its turns as they were then (the record is the current one).
        """
        found = keep_sound([await self.conversations.get(conv_id)], _typed_or_none, "conversation")
        record = found[0] if found else None
        if record is None:
            return None
        turns = keep_sound(
            await self.store.list_turns(conv_id, as_of_ms=as_of_ms), typed_turn, "turns"
        )
        runtimes = tuple(turn_runtime(self.read_path, t, record) for t in turns)
        history = runtime_history(self.read_path, turns, record)
        return ConversationView(record, tuple(turns), runtimes, tuple(history))

    async def snapshot_views(self, query: TurnQuery) -> list[TurnSnapshot]:
        """The snapshots answering ``query`` as the read path shows them (its conversation)."""
        seen: dict[str, ConversationRecord | None] = {}
        views = []
        for snapshot in keep_sound(await self.store.list(query), typed_snapshot, "snapshots"):
            if snapshot.conv_id not in seen:
                seen[snapshot.conv_id] = await self.conversations.get(snapshot.conv_id)
            views.append(self.read_path.view(snapshot, seen[snapshot.conv_id]))
        return views

    async def turn(
        self, conv_id: str, session_id: str, turn_id: str, *, as_of_ms: int | None = None
    ) -> dict[str, Any] | None:
        """The body of ``GET /turn/{conv_id}/{session_id}/{turn_id}``, or None when the turn
        has neither a turn row nor a snapshot (``as_of_ms``: at that time)."""
        stored = await self.store.get_turn(conv_id, session_id, turn_id, as_of_ms=as_of_ms)
        turn = stored and (keep_sound([stored], typed_turn, "turn") or [None])[0]
        # Every snapshot of this one turn, however old (no "newest N of the session" window).
        query = TurnQuery(
            conv_id=conv_id,
            session_id=session_id,
            turn_id=turn_id,
            as_of_ms=as_of_ms,
            limit=MAX_LIMIT,
        )
        found = keep_sound(await self.store.list(query), typed_snapshot, "snapshots")
        snapshots = list(reversed(found))
        if turn is None and not snapshots:
            return None
        conversation = None if self.stored_runtime else await self.conversations.get(conv_id)
        views = [self.read_path.view(s, conversation) for s in snapshots]
        if turn is not None:
            runtime = turn_runtime(self.read_path, turn, conversation)
            inference_id = turn.inference_id
        else:  # snapshots without a turn row (an old database): the oldest one speaks
            runtime, inference_id = views[0].runtime_key, views[0].inference_id
        return {
            "conv_id": conv_id,
            "session_id": session_id,
            "turn_id": turn_id,
            "runtime_key": runtime,
            "inference_id": inference_id,
            "items": [phase_json(v) for v in views],
        }


def _typed_or_none(record: ConversationRecord | None) -> ConversationRecord | None:
    return None if record is None else typed_conversation(record)


async def turn_rows(
    store: TurnStore,
    query: TurnQuery,
    read_path: ReadPath = ReadPath(),  # noqa: B008 (stateless)
) -> list[Sequence[Any]]:
    """The snapshots answering ``query``, newest first, as rows of
    :data:`sim.api.views.ITEM_FIELDS` (shown by ``read_path``), as ``/turns`` lists them."""
    if shows_stored_runtime(read_path):
        return await store.list_rows(query)
    return [item_row(v) for v in await DebugReads(store, read_path).snapshot_views(query)]


async def conversation_detail(
    store: TurnStore,
    conv_id: str,
    read_path: ReadPath = ReadPath(),  # noqa: B008 (stateless)
) -> dict[str, Any] | None:
    """The body of ``GET /conversations/{conv_id}`` (None when the index has no row)."""
    view = await DebugReads(store, read_path).conversation(conv_id)
    return None if view is None else view.to_json()
