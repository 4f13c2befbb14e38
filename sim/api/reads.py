"""The debug API's reads as library calls: what ``GET /api/debug/turns`` and
``GET /api/debug/conversations/{conv_id}`` answer, without HTTP.

The HTTP endpoints (:mod:`sim.api.app`) and the command line (``turnsim turns``,
``turnsim history``) both call these, so the same query gives the same items: the
command's ``--json`` is the endpoint's body, byte for byte. Rule 2 holds as everywhere: a
turn's runtime is the one stored with it, decided by the :class:`ReadPath`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from persisters.model import ConversationRecord, TurnQuery
from persisters.readpath import ReadPath
from persisters.store import TurnStore
from sim.api.views import (
    conversation_json,
    item_row,
    runtime_history,
    shows_stored_runtime,
)


async def turn_rows(
    store: TurnStore,
    query: TurnQuery,
    read_path: ReadPath = ReadPath(),  # noqa: B008 (stateless)
) -> list[Sequence[Any]]:
    """The snapshots answering ``query``, newest first, as rows of
    :data:`sim.api.views.ITEM_FIELDS` (shown by ``read_path``)."""
    if shows_stored_runtime(read_path):
        return await store.list_rows(query)
    seen: dict[str, ConversationRecord | None] = {}
    rows = []
    for snapshot in await store.list(query):
        if snapshot.conv_id not in seen:
            seen[snapshot.conv_id] = await store.conversations.get(snapshot.conv_id)
        rows.append(item_row(read_path.view(snapshot, seen[snapshot.conv_id])))
    return rows


async def conversation_detail(
    store: TurnStore,
    conv_id: str,
    read_path: ReadPath = ReadPath(),  # noqa: B008 (stateless)
) -> dict[str, Any] | None:
    """One conversation with its ``runtime_history`` (None when the index has no row)."""
    record = await store.conversations.get(conv_id)
    if record is None:
        return None
    turns = await store.list_turns(conv_id)
    body = conversation_json(record, len(turns))
    body["runtime_history"] = runtime_history(read_path, turns, record)
    return body
