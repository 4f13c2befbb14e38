"""Replay: the rows a run's store holds (payloads and metadata JSON aside), rebuilt from
the run's events alone. ``tests/logs/test_replay.py`` compares them with the run's
database column by column."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from sim.events import SAVED
from sim.logs.fields import time_of


@attrs.define
class StoreImage:
    """The rows a run's store holds, rebuilt from its log (payload and metadata JSON aside).

    Keys and columns follow ``persisters/schema.py``: ``conversations`` by conv id,
    ``turns`` by (conv_id, session_id, turn_id), ``snapshots`` by snapshot id.
    """

    conversations: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    turns: dict[tuple[str, str, str], dict[str, Any]] = attrs.field(factory=dict)
    snapshots: dict[int, dict[str, Any]] = attrs.field(factory=dict)


def replay_store(events: Iterable[dict[str, Any]]) -> StoreImage:
    """Apply every storing event of a run, in log order, the way the store applied it."""
    image = StoreImage()
    before_switch: dict[str, dict[str, Any] | None] = {}  # undo for a failed pointer write
    failed_touch: set[str] = set()  # the activity write before inference.finished failed
    for e in events:
        name = e["event"]
        t = time_of(e) or 0
        if name == "conversation.index_save_failed":
            conv_id = e["conv_id"]
            if e.get("operation") == "touch":
                failed_touch.add(conv_id)
            elif conv_id in before_switch:
                old = before_switch.pop(conv_id)
                if old is None:
                    image.conversations.pop(conv_id, None)
                else:
                    image.conversations[conv_id] = old
            continue
        if name in ("conversation.started", "profile.switched", "inference.finished"):
            conv_id = e["conv_id"]
            row = image.conversations.get(conv_id)
            if name == "inference.finished" or (row is not None and name != "profile.switched"):
                if row is not None and conv_id not in failed_touch:  # activity, not the pointer
                    row["last_activity_ms"] = max(row["last_activity_ms"], t)
                failed_touch.discard(conv_id)
                continue
            before_switch[conv_id] = dict(row) if row is not None else None
            if row is None:
                row = image.conversations[conv_id] = {"created_at_ms": t, "last_activity_ms": t}
            row["session_id"] = e["session_id"]
            row["current_runtime_key"] = e["runtime_key"]
            row["profile_slug"] = e["profile"]
            row["last_activity_ms"] = max(row["last_activity_ms"], t)
        elif name in SAVED:
            created = e.get("created_at_ms", t)
            key = (e["conv_id"], e["session_id"], e["turn_id"])
            image.snapshots[e["snapshot_id"]] = {
                "conv_id": key[0],
                "session_id": key[1],
                "turn_id": key[2],
                "phase": e["phase"],
                "created_at_ms": created,
                "runtime_key": e["runtime_key"],
                "inference_id": e["inference_id"],
            }
            row = image.turns.get(key)
            if row is None:
                row = image.turns[key] = {
                    "turn_created_at_ms": created,
                    "updated_at_ms": created,
                }
            row["updated_at_ms"] = max(row["updated_at_ms"], created)
            row["runtime_key"] = e["runtime_key"]
            row["inference_id"] = e["inference_id"]
    return image
