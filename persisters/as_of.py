"""Point-in-time reads: the store as it was at a (virtual) time, from its snapshots.

Snapshots are append-only, so the store's past is in them: the snapshots at ``as_of_ms``
are those with ``created_at_ms <= as_of_ms`` (:attr:`TurnQuery.as_of_ms
<persisters.model.TurnQuery.as_of_ms>`), and a turn at ``as_of_ms`` is derived from its
snapshots up to then: it existed if it had one, its ``runtime_key`` / ``inference_id`` are
those its newest one recorded (every save writes the turn row and its snapshot with the
same projection), ``created_at_ms`` its oldest one's time and ``updated_at_ms`` its
newest one's. Every store answers ``get_turn`` / ``list_turns`` with ``as_of_ms`` through
these functions, over its own :meth:`~persisters.store.TurnStore.list`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from persisters.model import MAX_LIMIT, TurnQuery, TurnRecord, TurnSnapshot

if TYPE_CHECKING:
    from persisters.store import TurnStore


def turn_of_snapshots(snapshots: Sequence[TurnSnapshot]) -> TurnRecord | None:
    """The turn row its snapshots (newest first, as ``list`` gives them) imply; None if none."""
    if not snapshots:
        return None
    newest, oldest = snapshots[0], snapshots[-1]
    return TurnRecord(
        newest.conv_id,
        newest.session_id,
        newest.turn_id,
        newest.runtime_key,
        newest.inference_id,
        oldest.created_at_ms,
        newest.created_at_ms,
    )


async def get_turn_as_of(
    store: TurnStore, conv_id: str, session_id: str, turn_id: str, as_of_ms: int
) -> TurnRecord | None:
    """The turn as it was at ``as_of_ms`` (None: it had no snapshot yet)."""
    query = TurnQuery(
        conv_id=conv_id, session_id=session_id, turn_id=turn_id, as_of_ms=as_of_ms, limit=MAX_LIMIT
    )
    return turn_of_snapshots(await store.list(query))


async def list_turns_as_of(store: TurnStore, conv_id: str, as_of_ms: int) -> list[TurnRecord]:
    """Every turn of a conversation as it was at ``as_of_ms``, oldest first."""
    out = []
    for turn in await store.list_turns(conv_id):
        if turn.created_at_ms > as_of_ms:
            continue
        past = await get_turn_as_of(store, turn.conv_id, turn.session_id, turn.turn_id, as_of_ms)
        if past is not None:
            out.append(past)
    return out
