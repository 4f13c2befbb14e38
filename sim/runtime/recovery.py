"""What a server's boot does for a conversation whose turns a cold restart interrupted.

A restart kills the process mid-inference: the interrupted turn has its phase snapshots
but no final save, and nothing that ran in memory survives to give it one. On boot each
reopened conversation looks in the store for its turns without a ``final`` snapshot and
saves one through the final persister (``data.status = interrupted``), under the runtime
and inference id the turn was stored with, so no turn stays "in progress" forever
(the invariant ``no-zombie-inflight``). The bug variant ``no-restart-recovery`` skips this.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol, cast

from persisters.model import FINAL, MAX_LIMIT, Block, Turn, TurnQuery, TurnSnapshot
from persisters.pipeline import Saves
from sim.runtime import inference
from sim.runtime.inference import Binding, InferenceEnv
from sim.runtime.recorder import Recorder


class RecoveryEnv(InferenceEnv, Protocol):
    """What recovery may use: an inference's environment plus the recorder."""

    recorder: Recorder


class _Reads(Saves, Protocol):
    """The store as recovery uses it: the pipelines' save plus ``list``."""

    async def list(self, query: TurnQuery) -> list[TurnSnapshot]: ...


def turn_of_payload(turn_id: str, payload: str) -> Turn:
    """The turn a stored payload holds (what :meth:`Turn.serialize` wrote)."""
    try:
        data: Any = json.loads(payload)
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    blocks = tuple(
        Block(b.get("kind", "llm_text"), b.get("text", ""), b.get("data") or {})
        for b in data.get("blocks") or ()
        if isinstance(b, dict)
    )
    return Turn(
        id=turn_id,
        blocks=blocks,
        metadata=data.get("metadata") or {},
        data=data.get("data") or {},
    )


def unfinished(snapshots: list[TurnSnapshot]) -> list[TurnSnapshot]:
    """The latest snapshot of every turn that has no ``final`` one, in first-seen order."""
    latest: dict[tuple[str, str], TurnSnapshot] = {}
    finished: set[tuple[str, str]] = set()
    for s in sorted(snapshots, key=lambda s: s.snapshot_id):
        key = (s.session_id, s.turn_id)
        if s.phase == FINAL:
            finished.add(key)
        latest[key] = s
    return [s for key, s in latest.items() if key not in finished]


async def recover(env: RecoveryEnv, conv_id: str, current_runtime: Callable[[], str]) -> list[str]:
    """Give every interrupted turn of ``conv_id`` its final save; returns their turn ids."""
    store = cast(_Reads, env.store)  # the world's store reads too
    snapshots = await store.list(TurnQuery(conv_id=conv_id, limit=MAX_LIMIT))
    recovered = []
    for snap in unfinished(snapshots):
        turn = turn_of_payload(snap.turn_id, snap.payload)
        binding = Binding(
            conv_id,
            snap.session_id,
            snap.turn_id,
            snap.inference_id,
            snap.runtime_key,
            str(turn.data.get("profile", "")),
            snap.created_at_ms,
        )
        env.recorder.emit(
            "turn.recovered",
            conv_id=conv_id,
            session_id=snap.session_id,
            turn_id=snap.turn_id,
            inference_id=snap.inference_id,
            runtime_key=snap.runtime_key,
            phase=snap.phase,
        )
        final = turn.with_data(status="interrupted")
        await inference.save(env, env.build.final_persister, binding, FINAL, final, current_runtime)
        recovered.append(snap.turn_id)
    return recovered
