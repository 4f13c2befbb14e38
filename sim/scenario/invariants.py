"""Invariant checkers: read a run's history and the store's final state, report violations.

All checkers are on by default and run after every scenario. Each compares the stored
state with the *recorded history* (what the run saw as it happened), not with the final
state alone, so a value rewritten and then rewritten back is still caught.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from persisters.errors import TRIGGER_REFUSAL
from persisters.model import (
    FINAL,
    POST_INFERENCE,
    PRE_INFERENCE,
    TurnSnapshot,
)
from sim.events import PIPELINE_SAVED, SAVE_FAILED, SAVED
from sim.runtime.profiles import ProfileRegistry
from sim.scenario import content_invariants, lifecycle_invariants
from sim.scenario.run_state import Checker, RunState, Violation

#: name -> the rule it checks (docs/scenarios.md explains each).
INVARIANTS: dict[str, str] = {
    "runtime-bound-at-start": (
        "every save of a turn, and every stored snapshot, carries the runtime that was "
        "current when its inference started"
    ),
    "phases-agree": "all stored phases of a turn share runtime_key and inference_id",
    "never-rewritten": (
        "no stored runtime_key/inference_id of a turn or snapshot changed after it was first "
        "recorded; snapshots are append-only, and a finished turn's blocks never change"
    ),
    "nothing-lost": (
        "every inference has its final save stored and every phase snapshot of a completed "
        "inference is stored, unless a failure was surfaced and the scenario expected it"
    ),
    "pointer-is-current": (
        "each conversation's current_runtime_key is the runtime of its last switch, and no "
        "read derives a turn's runtime from it"
    ),
    "distinct-turns": (
        "every inference has its own non-empty turn id, never an earlier inference's; turns "
        "never merge"
    ),
    "block-attribution-stable": (
        "every block keeps the attribution (inference, runtime) it was first stored with, "
        "and it names the runtime its inference started under: a later inference never "
        "restamps an earlier answer"
    ),
    "phase-snapshot-faithful": (
        "every phase snapshot shows the turn as it was at that phase: pre_inference ends with "
        "the prompt or a tool result, post_inference with the model's output, post_tools "
        "with a tool result"
    ),
    "history-continuity": (
        "an inference of a history conversation starts from the blocks of the conversation's "
        "latest stored final, never from an empty or partial history"
    ),
    "switch-takes-effect": (
        "every inference runs on the runtime the conversation's pointer held when it started"
    ),
    "durable-before-advance": (
        "no phase of an inference is taken before the previous phase's snapshot save "
        "settled (stored or failed for good)"
    ),
    "tool-pairing": "every stored final save answers each of its tool calls with a result",
    "no-zombie-inflight": (
        "every stored turn ends with a final snapshot (or a surfaced failure of its final "
        "save), restarts included"
    ),
    "single-writer": (
        "at most one inference of a conversation runs at a time, scheduled events included"
    ),
    "terminal-is-last": (
        "nothing of a turn is written after its final save; its final snapshot is its last"
    ),
}


def _started(state: RunState) -> dict[str, dict[str, Any]]:
    """inference_id -> its inference.started event."""
    return {e["inference_id"]: e for e in state.events if e["event"] == "inference.started"}


def _switches(state: RunState) -> dict[str, list[int]]:
    """conv_id -> seqs of its profile switches, in order."""
    out: dict[str, list[int]] = defaultdict(list)
    for e in state.events:
        if e["event"] == "profile.switched":
            out[e["conv_id"]].append(e["seq"])
    return out


def _cause(switches: dict[str, list[int]], conv_id: str, after: int, before: int) -> int:
    """The last switch of a conversation between two history events (0 if none)."""
    found = [s for s in switches.get(conv_id, ()) if after < s < before]
    return found[-1] if found else 0


def check_runtime_bound(state: RunState) -> Iterable[Violation]:
    started = _started(state)
    switches = _switches(state)
    for e in state.events:
        if e["event"] not in (*PIPELINE_SAVED, *SAVE_FAILED):
            continue
        start = started.get(e.get("inference_id", ""))
        if start is None:
            continue
        carried = e.get("carried_runtime_key", e.get("runtime_key", ""))
        if carried != start["runtime_key"]:
            how = "stored" if e["event"] in SAVED else "refused by the store"
            yield Violation(
                "runtime-bound-at-start",
                e["conv_id"],
                f"the {e.get('pipeline', '')} save of phase {e['phase']} carried {carried} but "
                f"the inference started under {start['runtime_key']} at t={start['t_ms']}ms "
                f"({how})",
                turn_id=e["turn_id"],
                phase=e["phase"],
                expected=start["runtime_key"],
                actual=carried,
                seq=e["seq"],
                cause_seq=_cause(switches, e["conv_id"], start["seq"], e["seq"]),
            )
    for s in state.snapshots:
        start = started.get(s.inference_id)
        if start is not None and s.runtime_key != start["runtime_key"]:
            yield Violation(
                "runtime-bound-at-start",
                s.conv_id,
                f"stored snapshot {s.snapshot_id} (phase {s.phase}) has runtime {s.runtime_key} "
                f"but its inference started under {start['runtime_key']}",
                turn_id=s.turn_id,
                phase=s.phase,
                expected=start["runtime_key"],
                actual=s.runtime_key,
            )


def check_phases_agree(state: RunState) -> Iterable[Violation]:
    groups: dict[tuple[str, str, str], list[TurnSnapshot]] = defaultdict(list)
    for s in state.snapshots:
        groups[(s.conv_id, s.session_id, s.turn_id)].append(s)
    for (conv, _, turn), snaps in groups.items():
        for field in ("runtime_key", "inference_id"):
            values = sorted({getattr(s, field) for s in snaps})
            if len(values) > 1:
                detail = ", ".join(f"{s.phase}={getattr(s, field)}" for s in snaps)
                yield Violation(
                    "phases-agree",
                    conv,
                    f"the phases of this turn disagree on {field}: {detail}",
                    turn_id=turn,
                    expected=f"one {field}",
                    actual=" / ".join(values),
                )


def _trigger_refusals(state: RunState) -> Iterable[Violation]:
    """A rewrite only the database's write-once trigger refused: the store let it through."""
    for e in state.events:
        if TRIGGER_REFUSAL in str(e.get("error", "")):
            yield Violation(
                "never-rewritten",
                e["conv_id"],
                f"a save ({e['event']}) tried to rewrite the recorded runtime_key/inference_id "
                "of this turn: the store's own policy let it through and only the database's "
                "write-once trigger refused it",
                turn_id=str(e.get("turn_id", "")),
                phase=str(e.get("phase", "")),
                expected="refused by the store",
                actual="refused by the trigger",
                seq=e["seq"],
            )


def check_never_rewritten(state: RunState) -> Iterable[Violation]:
    yield from _trigger_refusals(state)
    first: dict[tuple[str, str, str], tuple[str, str, int]] = {}
    recorded: dict[int, dict[str, Any]] = {}
    for e in state.events:
        if e["event"] not in SAVED:
            continue
        key = (e["conv_id"], e["session_id"], e["turn_id"])
        values = (e["runtime_key"], e["inference_id"])
        recorded[e["snapshot_id"]] = e
        if key not in first:
            first[key] = (*values, e["seq"])
            continue
        old_runtime, old_inference, old_seq = first[key]
        for name, old, new in (
            ("runtime_key", old_runtime, values[0]),
            ("inference_id", old_inference, values[1]),
        ):
            if old and new != old:
                yield Violation(
                    "never-rewritten",
                    e["conv_id"],
                    f"a save ({e['event']}, phase {e['phase']}) changed the turn's stored {name} "
                    f"from {old} (recorded at event {old_seq}) to {new}",
                    turn_id=e["turn_id"],
                    phase=e["phase"],
                    expected=old,
                    actual=new,
                    seq=e["seq"],
                )
    for t in state.turns:
        key = (t.conv_id, t.session_id, t.turn_id)
        if key in first:
            old_runtime, old_inference, _ = first[key]
            if (old_runtime and t.runtime_key != old_runtime) or (
                old_inference and t.inference_id != old_inference
            ):
                yield Violation(
                    "never-rewritten",
                    t.conv_id,
                    f"the stored turn row now says {t.runtime_key}/{t.inference_id}, first "
                    f"recorded as {old_runtime}/{old_inference}",
                    turn_id=t.turn_id,
                    expected=old_runtime,
                    actual=t.runtime_key,
                )
    by_id = {s.snapshot_id: s for s in state.snapshots}
    for snapshot_id, e in recorded.items():
        s = by_id.get(snapshot_id)
        if s is None:
            yield Violation(
                "never-rewritten",
                e["conv_id"],
                f"snapshot {snapshot_id} (phase {e['phase']}) was recorded as stored but is gone",
                turn_id=e["turn_id"],
                phase=e["phase"],
                seq=e["seq"],
            )
        elif (s.runtime_key, s.inference_id, s.phase) != (
            e["runtime_key"],
            e["inference_id"],
            e["phase"],
        ):
            yield Violation(
                "never-rewritten",
                s.conv_id,
                f"snapshot {snapshot_id} changed in place: recorded {e['phase']} "
                f"{e['runtime_key']}/{e['inference_id']}, stored {s.phase} "
                f"{s.runtime_key}/{s.inference_id}",
                turn_id=s.turn_id,
                phase=s.phase,
                expected=e["runtime_key"],
                actual=s.runtime_key,
                seq=e["seq"],
            )
    for s in state.snapshots:
        if s.snapshot_id not in recorded:
            yield Violation(
                "never-rewritten",
                s.conv_id,
                f"snapshot {s.snapshot_id} (phase {s.phase}) is stored but no recorded save "
                "wrote it",
                turn_id=s.turn_id,
                phase=s.phase,
            )


def _expected_hook_phases(registry: ProfileRegistry, profile: str) -> list[str]:
    if profile in registry:
        return registry.get(profile).hook_phases()
    return [PRE_INFERENCE, POST_INFERENCE, FINAL]


def check_nothing_lost(state: RunState) -> Iterable[Violation]:
    started = _started(state)
    saved: dict[tuple[str, str], list[str]] = defaultdict(list)  # (inference, pipeline) -> phases
    failed: dict[tuple[str, str], list[str]] = defaultdict(list)
    stored_ids = {s.snapshot_id for s in state.snapshots}
    for e in state.events:
        if e["event"] in ("snapshot.saved", "turn.persisted"):
            if e["snapshot_id"] in stored_ids:
                saved[(e["inference_id"], e["pipeline"])].append(e["phase"])
        elif e["event"] in SAVE_FAILED:
            failed[(e["inference_id"], e["pipeline"])].append(e["phase"])
            if e["seq"] not in state.expected_failures:
                yield Violation(
                    "nothing-lost",
                    e["conv_id"],
                    f"a {e['pipeline']} save of phase {e['phase']} failed ({e['error']}); the "
                    "failure was surfaced but the scenario did not expect it (add an "
                    "expect_failure step if it is intended)",
                    turn_id=e["turn_id"],
                    phase=e["phase"],
                    seq=e["seq"],
                )
    for e in state.events:
        if e["event"] != "inference.finished":
            continue
        inference = e["inference_id"]
        if not saved[(inference, "final")] and not failed[(inference, "final")]:
            yield Violation(
                "nothing-lost",
                e["conv_id"],
                f"the inference ended ({e['outcome']}) but its final save is neither stored "
                "nor reported as failed",
                turn_id=e["turn_id"],
                phase=FINAL,
                expected="a stored final save",
                actual="nothing",
                seq=e["seq"],
            )
        if e["outcome"] != "completed":
            continue
        start = started.get(inference)
        if start is None:
            continue
        have = list(saved[(inference, "snapshot")]) + list(failed[(inference, "snapshot")])
        for phase in _expected_hook_phases(state.registry, start["profile"]):
            if phase in have:
                have.remove(phase)
                continue
            yield Violation(
                "nothing-lost",
                e["conv_id"],
                f"the {phase} snapshot of a completed inference is not stored and no failure "
                "was surfaced (lost silently)",
                turn_id=e["turn_id"],
                phase=phase,
                expected="stored or surfaced",
                actual="missing",
                seq=e["seq"],
            )


def check_pointer(state: RunState) -> Iterable[Violation]:
    last: dict[str, tuple[str, int]] = {}
    for e in state.events:
        if e["event"] in ("conversation.started", "conversation.restarted", "profile.switched"):
            last[e["conv_id"]] = (e["runtime_key"], e["seq"])
    records = {c.conv_id: c for c in state.conversations}
    for conv_id, (runtime, seq) in last.items():
        record = records.get(conv_id)
        actual = record.current_runtime_key if record else "(no row)"
        if actual != runtime:
            yield Violation(
                "pointer-is-current",
                conv_id,
                f"current_runtime_key is {actual} but the last switch set {runtime}",
                expected=runtime,
                actual=actual,
                seq=seq,
            )
    reported: set[tuple[str, str]] = set()
    for s in state.snapshots:
        shown = state.read_path.view(s, records.get(s.conv_id)).runtime_key
        if shown != s.runtime_key and (s.conv_id, s.turn_id) not in reported:
            reported.add((s.conv_id, s.turn_id))
            yield Violation(
                "pointer-is-current",
                s.conv_id,
                f"reads report this turn as {shown} (the conversation's current pointer) but it "
                f"is stored as {s.runtime_key}; the pointer is not history",
                turn_id=s.turn_id,
                phase=s.phase,
                expected=s.runtime_key,
                actual=shown,
            )


def check_distinct_turns(state: RunState) -> Iterable[Violation]:
    for e in state.events:
        if e["event"] == "inference.started" and not e["turn_id"].strip():
            yield Violation(
                "distinct-turns",
                e["conv_id"],
                f"inference {e['inference_id']} started without a turn id of its own",
                expected="a fresh turn id",
                actual="''",
                seq=e["seq"],
            )
    owners: dict[tuple[str, str, str], dict[str, int]] = defaultdict(dict)
    for e in state.events:
        if e["event"] in (*PIPELINE_SAVED, *SAVE_FAILED):
            key = (e["conv_id"], e["session_id"], e["turn_id"])
            owners[key].setdefault(e["inference_id"], e["seq"])
    for (conv, _, turn), inferences in owners.items():
        if len(inferences) > 1:
            seq = sorted(inferences.values())[1]
            yield Violation(
                "distinct-turns",
                conv,
                f"{len(inferences)} inferences saved under the same turn id {turn!r}: "
                f"{', '.join(sorted(inferences))}",
                turn_id=turn,
                expected="one inference per turn",
                actual=f"{len(inferences)} inferences",
                seq=seq,
            )


CHECKERS: dict[str, Checker] = {
    "runtime-bound-at-start": check_runtime_bound,
    "phases-agree": check_phases_agree,
    "never-rewritten": check_never_rewritten,
    "nothing-lost": check_nothing_lost,
    "pointer-is-current": check_pointer,
    "distinct-turns": check_distinct_turns,
}
CHECKERS = {**content_invariants.checkers(CHECKERS), **lifecycle_invariants.CHECKERS}


def check_all(state: RunState) -> list[Violation]:
    """Every checker, in catalogue order; violations within one checker in history order."""
    out: list[Violation] = []
    for checker in CHECKERS.values():
        out.extend(checker(state))
    return out
