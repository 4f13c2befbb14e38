"""Invariant checkers of a turn's life: its writes, its tool calls, its end, its writer.

Registered in :data:`sim.scenario.invariants.CHECKERS` (the one-line rules are in
:data:`sim.scenario.invariants.INVARIANTS` and ``docs/scenarios.md``). Each reads the
recorded history and the store's final state (:class:`sim.scenario.run_state.RunState`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from persisters.model import FINAL, TurnSnapshot
from sim.events import PIPELINE_SAVED, SAVE_FAILED, SAVE_LOST
from sim.scenario.run_state import Checker, RunState, Violation

#: A pipeline save settled: stored, or failed for good (surfaced or swallowed).
_SETTLED = (*PIPELINE_SAVED, *SAVE_LOST)


def check_durable_before_advance(state: RunState) -> Iterable[Violation]:
    """No phase of an inference is taken before the previous phase's snapshot is stored.

    Each stored save's stamp (``created_at_ms``, when the engine took the phase) is
    compared with the time it was stored (its event's ``t_ms``): any other save of the
    inference stamped strictly between the two was taken while it was still in flight. A
    save that fails for good settles when its failure is surfaced; its event carries no
    stamp, so it only ever counts as a later phase."""
    settled: dict[str, list[dict[str, Any]]] = defaultdict(list)  # inference -> saves
    # A conversation that declared write-behind (``durability: async``, on its
    # inference.started) lets its phase writes trail the engine; its final still waits.
    declared = {
        e["inference_id"]
        for e in state.events
        if e["event"] == "inference.started" and e.get("durability") == "async"
    }
    for e in state.events:
        if e["event"] in _SETTLED and e.get("inference_id") not in declared | {"", None}:
            settled[e["inference_id"]].append(e)
    for saves in settled.values():
        stamps = [(e.get("created_at_ms", e["t_ms"]), e) for e in saves]
        for stamp, e in stamps:
            if e["event"] not in PIPELINE_SAVED:
                continue
            for later_stamp, later in stamps:
                if stamp < later_stamp < e["t_ms"]:
                    yield Violation(
                        "durable-before-advance",
                        e["conv_id"],
                        f"the {later['phase']} snapshot was taken at t={later_stamp}ms while "
                        f"the {e['phase']} snapshot taken at t={stamp}ms was not stored before "
                        f"t={e['t_ms']}ms: the inference moved on before its write was durable",
                        turn_id=e["turn_id"],
                        phase=e["phase"],
                        expected=f"stored by t={later_stamp}ms",
                        actual=f"stored at t={e['t_ms']}ms",
                        seq=e["seq"],
                    )
                    break


def check_tool_pairing(state: RunState) -> Iterable[Violation]:
    """Every stored final save answers each tool call with a result.

    Read from the history: a final save of a turn with tool calls left open records how
    many (``open_tool_calls`` on ``turn.persisted``), so a log alone is judged the same.
    """
    for e in state.events:
        unpaired = e.get("open_tool_calls", 0) if e["event"] == "turn.persisted" else 0
        if unpaired:
            yield Violation(
                "tool-pairing",
                e["conv_id"],
                f"the final save (snapshot {e['snapshot_id']}) stored {unpaired} tool call(s) "
                "without a result: every later run that sends this history is refused",
                turn_id=e["turn_id"],
                phase=e["phase"],
                expected="a result for every tool call",
                actual=f"{unpaired} unpaired",
                seq=e["seq"],
            )


def check_no_zombie_inflight(state: RunState) -> Iterable[Violation]:
    """Every stored turn ends with a final snapshot (or its final save failed, surfaced)."""
    failed_final = {
        (e["conv_id"], e["turn_id"])
        for e in state.events
        if e["event"] in SAVE_FAILED and e.get("phase") == FINAL
    }
    turns: dict[tuple[str, str, str], list[TurnSnapshot]] = defaultdict(list)
    for s in state.snapshots:
        turns[(s.conv_id, s.session_id, s.turn_id)].append(s)
    for (conv, _, turn), snaps in turns.items():
        if any(s.phase == FINAL for s in snaps) or (conv, turn) in failed_final:
            continue
        latest = max(snaps, key=lambda s: s.snapshot_id)
        yield Violation(
            "no-zombie-inflight",
            conv,
            f"the turn's latest stored snapshot is {latest.phase} and it has no final one: it "
            "stays in progress forever, though no inference runs it any more",
            turn_id=turn,
            phase=latest.phase,
            expected="a final snapshot",
            actual=f"last stored phase {latest.phase}",
        )


def check_single_writer(state: RunState) -> Iterable[Violation]:
    """At most one inference of a conversation runs at a time."""
    running: dict[str, dict[str, int]] = defaultdict(dict)  # conv -> inference -> seq
    for e in state.events:
        event = e["event"]
        if event == "server.stopped":
            running.clear()  # the process died with whatever ran
        elif event == "inference.started":
            others = running[e["conv_id"]]
            if others:
                other = next(iter(others))
                yield Violation(
                    "single-writer",
                    e["conv_id"],
                    f"inference {e['inference_id']} started while inference {other} of the "
                    "same conversation was still running: two writers update one conversation",
                    turn_id=e["turn_id"],
                    expected="one inference at a time",
                    actual=f"{len(others) + 1} at once",
                    seq=e["seq"],
                )
            others[e["inference_id"]] = e["seq"]
        elif event == "inference.finished":
            running[e["conv_id"]].pop(e["inference_id"], None)


def check_terminal_is_last(state: RunState) -> Iterable[Violation]:
    """Nothing of a turn is written after its final (terminal) save."""
    final_seq: dict[tuple[str, str], int] = {}
    for e in state.events:
        key = (e.get("conv_id", ""), e.get("turn_id", ""))
        if e["event"] in ("turn.persisted", "turn.persist_failed"):
            final_seq.setdefault(key, e["seq"])
        elif e["event"] == "snapshot.saved" and key in final_seq:
            yield Violation(
                "terminal-is-last",
                e["conv_id"],
                f"the {e['phase']} snapshot was stored after the turn's final save (event "
                f"{final_seq[key]}): a reader sees the turn end, then change",
                turn_id=e["turn_id"],
                phase=e["phase"],
                expected="no write after the final save",
                actual=f"{e['phase']} stored after final",
                seq=e["seq"],
            )
    yield from terminal_in_store(state.snapshots)


def terminal_in_store(snapshots: Iterable[TurnSnapshot]) -> Iterable[Violation]:
    """terminal-is-last on stored snapshots alone: none of a turn comes after its first final."""
    first_final: dict[tuple[str, str, str], int] = {}
    for s in sorted(snapshots, key=lambda s: s.snapshot_id):
        key3 = (s.conv_id, s.session_id, s.turn_id)
        if s.phase == FINAL:
            first_final.setdefault(key3, s.snapshot_id)
        elif key3 in first_final:
            yield Violation(
                "terminal-is-last",
                s.conv_id,
                f"stored snapshot {s.snapshot_id} ({s.phase}) comes after the turn's final "
                f"snapshot {first_final[key3]}",
                turn_id=s.turn_id,
                phase=s.phase,
                expected="final is the last snapshot",
                actual=f"{s.phase} after final",
            )


def unpaired_in_store(snapshots: Iterable[TurnSnapshot]) -> Iterable[Violation]:
    """tool-pairing on stored snapshots alone: each final payload answers its tool calls."""
    for s in snapshots:
        if s.phase != FINAL:
            continue
        try:
            data = json.loads(s.payload)
        except ValueError:
            continue  # a payload that is not JSON: `turnsim db doctor` reports it
        blocks = data.get("blocks") if isinstance(data, dict) else None
        open_calls = 0
        for block in blocks if isinstance(blocks, list) else ():
            kind = block.get("kind") if isinstance(block, dict) else None
            if kind == "tool_call":
                open_calls += 1
            elif kind == "tool_use" and open_calls:
                open_calls -= 1
        if open_calls:
            yield Violation(
                "tool-pairing",
                s.conv_id,
                f"stored final snapshot {s.snapshot_id} holds {open_calls} tool call(s) "
                "without a result",
                turn_id=s.turn_id,
                phase=s.phase,
                expected="a result for every tool call",
                actual=f"{open_calls} unpaired",
            )


#: name -> checker, in catalogue order (the names are keys of ``invariants.INVARIANTS``).
CHECKERS: dict[str, Checker] = {
    "durable-before-advance": check_durable_before_advance,
    "tool-pairing": check_tool_pairing,
    "no-zombie-inflight": check_no_zombie_inflight,
    "single-writer": check_single_writer,
    "terminal-is-last": check_terminal_is_last,
}

#: The lifecycle rules a database alone proves from its stored snapshots (``turnsim check
#: DB``), and the ones it cannot, with why.
FROM_SNAPSHOTS: dict[str, Callable[[list[TurnSnapshot]], Iterable[Violation]]] = {
    "tool-pairing": unpaired_in_store,
    "terminal-is-last": terminal_in_store,
}
HISTORY_ONLY: dict[str, str] = {
    "durable-before-advance": (
        "when each phase was taken and when its write was stored is history: check the run's log"
    ),
    "no-zombie-inflight": (
        "a turn without a final snapshot may still be running, or its final save failed "
        "and was surfaced: which, the history says"
    ),
    "single-writer": "which inferences ran at the same time is history: check the run's log",
}
