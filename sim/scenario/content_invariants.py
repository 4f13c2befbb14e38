"""Invariant checkers of what a turn holds: its blocks, its history, its profile.

Registered in :data:`sim.scenario.invariants.CHECKERS` with one line (the one-line rules are
in :data:`sim.scenario.invariants.INVARIANTS` and ``docs/scenarios.md``). Four are new:
``block-attribution-stable``, ``phase-snapshot-faithful``, ``history-continuity`` and
``switch-takes-effect``; two widen existing ones: ``distinct-turns`` (an inference that
starts under an earlier inference's turn id) and ``never-rewritten`` (a finished turn's
blocks change after its final save).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain
from typing import Any

from persisters.model import FINAL, POST_INFERENCE, POST_TOOLS, PRE_INFERENCE, Block, TurnSnapshot
from sim.events import SAVED
from sim.runtime.history import attribution, blocks_of_payload, turn_of_snapshot
from sim.scenario.run_state import Checker, RunState, Violation

#: The kind a phase snapshot's last block must have: the turn as it was at that phase.
PHASE_ENDS: dict[str, tuple[str, ...]] = {
    PRE_INFERENCE: ("user",),  # the prompt (the tool loop: or the last tool result)
    POST_INFERENCE: ("llm_text", "tool_call"),  # the model's output
    POST_TOOLS: ("tool_use",),  # a tool result
}


def _phase_ends(state: RunState, s: TurnSnapshot) -> tuple[str, ...] | None:
    ends = PHASE_ENDS.get(s.phase)
    if s.phase == PRE_INFERENCE:  # the tool loop calls the model again after each tool
        data = turn_of_snapshot(s).data
        slug = data.get("profile") if isinstance(data, dict) else None
        if not isinstance(slug, str) or slug not in state.registry:
            return ("user", "tool_use")
        if state.registry.get(slug).phase_pattern == "toolloop":
            return ("user", "tool_use")
    return ends


def _started(state: RunState) -> dict[str, dict[str, Any]]:
    return {e["inference_id"]: e for e in state.events if e["event"] == "inference.started"}


def _shape(blocks: Iterable[Block]) -> list[tuple[str, str, str]]:
    """What identifies a block's content: kind, text and its id."""
    return [(b.kind, b.text, str(b.data.get("id", ""))) for b in blocks]


def _names(blocks: Iterable[Block]) -> str:
    return ", ".join(b.kind for b in blocks) or "(none)"


def check_block_attribution(state: RunState) -> Iterable[Violation]:
    """A block keeps the attribution it was first stored with, and it names the runtime its
    inference started under."""
    started = _started(state)
    first: dict[tuple[str, str], tuple[str, str, TurnSnapshot]] = {}
    reported: set[tuple[str, str]] = set()
    for s in sorted(state.snapshots, key=lambda s: s.snapshot_id):
        for block in blocks_of_payload(s.payload):
            block_id, inference, runtime = attribution(block)
            if not block_id or not runtime:
                continue
            key = (s.conv_id, block_id)
            if key not in first:
                first[key] = (inference, runtime, s)
                start = started.get(inference)
                if start is not None and start["runtime_key"] != runtime:
                    reported.add(key)
                    yield Violation(
                        "block-attribution-stable",
                        s.conv_id,
                        f"block {block_id} ({block.kind}) says runtime {runtime} but inference "
                        f"{inference} started under {start['runtime_key']}",
                        turn_id=s.turn_id,
                        phase=s.phase,
                        expected=start["runtime_key"],
                        actual=runtime,
                    )
                continue
            old_inference, old_runtime, old = first[key]
            if (inference, runtime) != (old_inference, old_runtime) and key not in reported:
                reported.add(key)
                yield Violation(
                    "block-attribution-stable",
                    s.conv_id,
                    f"block {block_id} ({block.kind}, first stored in snapshot {old.snapshot_id}"
                    f" of turn {old.turn_id} as {old_runtime} / {old_inference}) carries "
                    f"{runtime} / {inference} in snapshot {s.snapshot_id} ({s.phase}): an "
                    "earlier answer was restamped",
                    turn_id=s.turn_id,
                    phase=s.phase,
                    expected=old_runtime,
                    actual=runtime,
                )


def check_phase_snapshot_faithful(state: RunState) -> Iterable[Violation]:
    """Each phase snapshot shows the turn as it was at that phase, not later."""
    for s in state.snapshots:
        ends = _phase_ends(state, s)
        blocks = blocks_of_payload(s.payload)
        if ends is None or not blocks or blocks[-1].kind in ends:
            continue
        yield Violation(
            "phase-snapshot-faithful",
            s.conv_id,
            f"snapshot {s.snapshot_id} ({s.phase}) ends with a {blocks[-1].kind} block; at "
            f"{s.phase} the turn ends with {' or '.join(ends)}: it holds a later step's "
            f"blocks ({_names(blocks)})",
            turn_id=s.turn_id,
            phase=s.phase,
            expected=" or ".join(ends),
            actual=blocks[-1].kind,
        )


def _history_at(state: RunState, conv_id: str, before: int) -> TurnSnapshot | None:
    """The conversation's latest final snapshot stored before history event ``before``."""
    by_id = {s.snapshot_id: s for s in state.snapshots}
    finals = [
        by_id[e["snapshot_id"]]
        for e in state.events
        if e["event"] in SAVED
        and e["seq"] < before
        and e.get("conv_id") == conv_id
        and e.get("phase") == FINAL
        and e.get("snapshot_id") in by_id
    ]
    return max(finals, key=lambda s: (s.created_at_ms, s.snapshot_id), default=None)


def check_history_continuity(state: RunState) -> Iterable[Violation]:
    """An inference of a history conversation starts from the conversation's stored history."""
    for e in state.events:
        if e["event"] != "inference.started" or "history_blocks" not in e or "resumed_from" in e:
            continue
        latest = _history_at(state, e["conv_id"], e["seq"])
        if latest is not None and not latest.payload:  # a state rebuilt from a log: the
            if e["history_blocks"] == 0:  # history's blocks are unknown, its being there not
                yield Violation(
                    "history-continuity",
                    e["conv_id"],
                    f"inference {e['inference_id']} started with no history, though the "
                    f"conversation's turn {latest.turn_id} was stored final before it",
                    turn_id=e["turn_id"],
                    expected="the stored history",
                    actual="0 history blocks",
                    seq=e["seq"],
                )
            continue
        expected = blocks_of_payload(latest.payload) if latest is not None else ()
        own = [
            s
            for s in state.snapshots
            if s.inference_id == e["inference_id"] and s.turn_id == e["turn_id"]
        ]
        first = min(own, key=lambda s: s.snapshot_id) if own else None
        fed = blocks_of_payload(first.payload) if first is not None and first.payload else None
        if e["history_blocks"] == len(expected) and (
            fed is None or _shape(fed[: len(expected)]) == _shape(expected)
        ):
            continue
        shown = f"{e['history_blocks']} block(s)" if fed is None else _names(fed)
        yield Violation(
            "history-continuity",
            e["conv_id"],
            f"inference {e['inference_id']} started with {shown} but the conversation's history "
            f"was {len(expected)} block(s) ({_names(expected)}, the final of turn "
            f"{latest.turn_id if latest else '-'}): it ran without its history",
            turn_id=e["turn_id"],
            expected=f"{len(expected)} history blocks",
            actual=f"{e['history_blocks']} history blocks",
            seq=e["seq"],
        )


def check_switch_takes_effect(state: RunState) -> Iterable[Violation]:
    """An inference runs on the runtime the conversation's pointer held when it started."""
    pointer: dict[str, tuple[str, int]] = {}
    updated: dict[str, str] = {}  # profile -> its newest version (update_profile)
    for e in state.events:
        if e["event"] in ("conversation.started", "conversation.restarted", "profile.switched"):
            pointer[e["conv_id"]] = (e["runtime_key"], e["seq"])
        elif e["event"] == "profile.updated":
            updated[e["profile"]] = e["runtime_key"]
        elif e["event"] == "inference.started" and e["conv_id"] in pointer:
            current, since = pointer[e["conv_id"]]
            # a new version of the profile may start before the actor moved its pointer
            newer = updated.get(e.get("profile", "")) == e["runtime_key"]
            if e["runtime_key"] != current and not newer:
                yield Violation(
                    "switch-takes-effect",
                    e["conv_id"],
                    f"inference {e['inference_id']} started on {e['runtime_key']} but the "
                    f"conversation was on {current} since event {since}: the switch was ignored",
                    turn_id=e["turn_id"],
                    expected=current,
                    actual=e["runtime_key"],
                    seq=e["seq"],
                    cause_seq=since,
                )


def check_turn_ids_reused(state: RunState) -> Iterable[Violation]:
    """``distinct-turns``, widened: no inference starts under an earlier one's turn id."""
    owner: dict[tuple[str, str], dict[str, Any]] = {}
    for e in state.events:
        if e["event"] != "inference.started" or not e["turn_id"].strip():
            continue
        key = (e["conv_id"], e["turn_id"])
        if key in owner:
            yield Violation(
                "distinct-turns",
                e["conv_id"],
                f"inference {e['inference_id']} started under turn id {e['turn_id']!r}, the "
                f"turn of inference {owner[key]['inference_id']} (event {owner[key]['seq']})",
                turn_id=e["turn_id"],
                expected="a fresh turn id",
                actual=e["turn_id"],
                seq=e["seq"],
            )
        else:
            owner[key] = e


def check_finished_content(state: RunState) -> Iterable[Violation]:
    """``never-rewritten``, widened: once the final persister stored a turn, no later
    snapshot of that turn holds other blocks (its checkpoint is not rewritten)."""
    by_id = {s.snapshot_id: s for s in state.snapshots}
    final: dict[tuple[str, str, str], TurnSnapshot] = {}
    for e in state.events:
        if e["event"] == "turn.persisted" and e["snapshot_id"] in by_id:
            final.setdefault((e["conv_id"], e["session_id"], e["turn_id"]), by_id[e["snapshot_id"]])
    reported: set[tuple[str, str, str]] = set()
    for s in sorted(state.snapshots, key=lambda s: s.snapshot_id):
        key = (s.conv_id, s.session_id, s.turn_id)
        done = final.get(key)
        if done is None or s.snapshot_id <= done.snapshot_id or key in reported:
            continue
        before, after = blocks_of_payload(done.payload), blocks_of_payload(s.payload)
        if _shape(before) != _shape(after):
            reported.add(key)
            yield Violation(
                "never-rewritten",
                s.conv_id,
                f"snapshot {s.snapshot_id} ({s.phase}) rewrote the finished turn: its final "
                f"(snapshot {done.snapshot_id}) held {len(before)} block(s), now "
                f"{len(after)} ({_names(after)})",
                turn_id=s.turn_id,
                phase=s.phase,
                expected=f"{len(before)} blocks",
                actual=f"{len(after)} blocks",
            )


#: What a log cannot show these checkers: a log holds no payloads (no blocks), so from a
#: log alone they judge nothing (``turnsim check`` says so); a database can.
NEEDS_PAYLOADS: dict[str, str] = {
    "block-attribution-stable": (
        "a log holds no payloads, so no block attribution: check the database"
    ),
    "phase-snapshot-faithful": "a log holds no payloads, so no blocks: check the database",
    "history-continuity": (
        "only in part: a log holds no payloads, so an inference fed no history at all is "
        "found, a partial history is not (the database holds the blocks)"
    ),
}

#: The new invariants' checkers, by name.
CHECKERS: dict[str, Checker] = {
    "block-attribution-stable": check_block_attribution,
    "phase-snapshot-faithful": check_phase_snapshot_faithful,
    "history-continuity": check_history_continuity,
    "switch-takes-effect": check_switch_takes_effect,
}
#: Checks that widen an existing invariant (same name): run after its own checker.
WIDENS: dict[str, Checker] = {
    "distinct-turns": check_turn_ids_reused,
    "never-rewritten": check_finished_content,
}


def checkers(existing: dict[str, Checker]) -> dict[str, Checker]:
    """``existing`` with the widened ones chained, then the new ones (catalogue order)."""
    out = dict(existing)
    for name, extra in WIDENS.items():
        own = out[name]
        out[name] = lambda state, own=own, extra=extra: chain(own(state), extra(state))
    return {**out, **CHECKERS}
