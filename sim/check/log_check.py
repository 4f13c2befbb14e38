"""Checking a JSON log: every invariant, on the history it holds, with no re-run.

A log (``turnsim run --log-file``) holds one or more runs, each from ``scenario.started``
to ``scenario.finished``; a log of another program's events (no ``scenario.started``) is
one run. For each run the store's final state is rebuilt from the log
(:func:`sim.logs.replay.replay_store`) and :func:`sim.scenario.invariants.check_all` runs
on the history exactly as it ran at the end of the run. The run's own ``invariant.violated``
lines are not read: the verdict is recomputed.

Two inputs of ``nothing-lost`` live in the scenario file, not in the log: the phases each
profile's inference saves and which surfaced failures an ``expect_failure`` step matched.
The file named by ``scenario.started`` is read when it is still there (as given, or next
to the log); without it those parts are reported as not judged.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from persisters.model import FINAL, ConversationRecord, TurnRecord, TurnSnapshot
from sim.check.report import CheckInputError, CheckReport, Finding, NotJudged
from sim.events import SAVE_FAILED
from sim.logs.read import LogFileError, read_events
from sim.logs.replay import replay_store
from sim.runtime.profiles import ProfileRegistry
from sim.runtime.variants import UnknownVariantError, build
from sim.scenario.content_invariants import NEEDS_PAYLOADS
from sim.scenario.expectations import ExpectFailure
from sim.scenario.invariants import INVARIANTS, RunState, Violation, check_all
from sim.scenario.model import Scenario
from sim.scenario.parse import load_scenario

#: Events a run writes after its checks ran (not part of the history they read).
_AFTER_CHECKS = ("invariant.violated", "scenario.finished")


def split_runs(events: Iterable[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The log's runs, each from its ``scenario.started`` (or the log's start)."""
    runs: list[list[dict[str, Any]]] = []
    for e in events:
        if e.get("event") == "scenario.started" or not runs:
            runs.append([])
        runs[-1].append(e)
    return runs


def _scenario_of(start: dict[str, Any], log: Path) -> Scenario | None:
    path = start.get("path")
    if not isinstance(path, str) or not path:
        return None
    for candidate in (Path(path), log.parent / path):
        if candidate.is_file():
            try:
                scenario = load_scenario(candidate)
            except Exception:  # a changed or broken file: judged without it
                return None
            return scenario if scenario.name == start.get("scenario") else None
    return None


def expected_failures(scenario: Scenario, events: Sequence[dict[str, Any]]) -> frozenset[int]:
    """The seqs of surfaced failures the scenario's ``expect_failure`` steps matched, as the
    director matched them: failures recorded before the step started."""
    steps = {s.index: s.step for s in scenario.steps}
    out: set[int] = set()
    for start in events:
        if start["event"] != "step.started" or start.get("kind") != ExpectFailure.key:
            continue
        step = steps.get(start["step"])
        if not isinstance(step, ExpectFailure):
            continue
        conv_id = f"{scenario.name}.{step.conv}" if step.conv else None
        turn_id = None
        if conv_id and step.turn:
            started = [
                e["turn_id"]
                for e in events
                if e["event"] == "inference.started"
                and e["conv_id"] == conv_id
                and e.get("turn") == step.turn
                and e["seq"] < start["seq"]
            ]
            turn_id = started[-1] if started else "\0none"
        for e in events:
            if e["seq"] >= start["seq"]:
                break
            if (
                e["event"] in SAVE_FAILED
                and (conv_id is None or e["conv_id"] == conv_id)
                and (turn_id is None or e["turn_id"] == turn_id)
                and (step.phase is None or e["phase"] == step.phase)
                and (step.pipeline is None or e["pipeline"] == step.pipeline)
                and (step.contains is None or step.contains in e["error"])
            ):
                out.add(e["seq"])
    return frozenset(out)


def state_of_run(events: Sequence[dict[str, Any]], scenario: Scenario | None) -> RunState:
    """What the checkers read at the end of the run, rebuilt from its log lines."""
    history = [e for e in events if e["event"] not in _AFTER_CHECKS]
    image = replay_store(history)
    snapshots = [
        TurnSnapshot(
            s["conv_id"],
            s["session_id"],
            s["turn_id"],
            s["phase"],
            s["runtime_key"],
            s["inference_id"],
            s["created_at_ms"],
            "",
            snapshot_id,
        )
        for snapshot_id, s in sorted(image.snapshots.items())
    ]
    turns = [
        TurnRecord(
            *key, t["runtime_key"], t["inference_id"], t["turn_created_at_ms"], t["updated_at_ms"]
        )
        for key, t in image.turns.items()
    ]
    conversations = [
        ConversationRecord(
            conv_id,
            c["session_id"],
            c["current_runtime_key"],
            c.get("profile_slug", ""),
            c["created_at_ms"],
            c["last_activity_ms"],
        )
        for conv_id, c in image.conversations.items()
    ]
    start = events[0] if events and events[0]["event"] == "scenario.started" else {}
    try:
        read_path = build(start.get("variants") or ()).read_path
    except UnknownVariantError:  # a variant another install registered: the default reads
        read_path = build(()).read_path
    if scenario is None:
        registry = ProfileRegistry(())
        expected = frozenset(e["seq"] for e in history if e["event"] in SAVE_FAILED)
    else:
        registry = scenario.registry()
        expected = expected_failures(scenario, history)
    return RunState(
        events=history,
        snapshots=snapshots,
        turns=turns,
        conversations=conversations,
        registry=registry,
        expected_failures=expected,
        read_path=read_path,
    )


def _evidence(v: Violation) -> tuple[str, ...]:
    seqs = sorted({s for s in (v.cause_seq, v.seq) if s})
    if seqs:
        return tuple(f"seq {s}" for s in seqs)
    key = "/".join(x for x in (v.conv_id, v.turn_id, v.phase) if x)
    return (f"final state: {key}",)


def _kept(v: Violation, scenario: Scenario | None) -> bool:
    """Without the scenario only the part of nothing-lost the log alone proves is kept: a
    final save neither stored nor reported as failed."""
    if scenario is not None or v.invariant != "nothing-lost":
        return True
    return v.phase == FINAL and v.actual == "nothing"


def check_log(path: str | os.PathLike[str]) -> CheckReport:
    """Every invariant on every run of the JSON log at ``path``."""
    source = os.fspath(path)
    try:
        events = read_events(source)
    except (LogFileError, OSError, ValueError) as exc:
        raise CheckInputError(f"{source}: not a readable turnsim JSON log ({exc})") from None
    if not any(e.get("event") in ("inference.started", "snapshot.saved") for e in events):
        raise CheckInputError(
            f"{source}: holds no run history (no inference.started or snapshot.saved "
            "event); write one with `turnsim run --log-file FILE`"
        )
    findings: list[Finding] = []
    missing_scenario: list[str] = []
    runs = split_runs(events)
    for run in runs:
        start = run[0] if run[0]["event"] == "scenario.started" else {}
        scenario = _scenario_of(start, Path(source)) if start else None
        label = f"{start['scenario']} seed {start['seed']}" if start else ""
        if scenario is None:
            missing_scenario.append(label or "(no scenario.started)")
        try:
            state = state_of_run(run, scenario)
        except KeyError as exc:
            raise CheckInputError(
                f"{source}: run {label or 1} lacks the field {exc} an invariant reads; "
                "the log was not written by `turnsim run --log-file`"
            ) from None
        for v in check_all(state):
            if _kept(v, scenario):
                findings.append(
                    Finding(v.invariant, v.message, _evidence(v), v.conv_id, v.turn_id, label)
                )
    not_judged = [NotJudged(name, why) for name, why in NEEDS_PAYLOADS.items()]
    if missing_scenario:
        not_judged.append(
            NotJudged(
                "nothing-lost",
                "only in part (a final save neither stored nor reported): the scenario file "
                "of run(s) " + ", ".join(missing_scenario[:3]) + " is not readable, and the "
                "phases each profile saves and the failures its expect_failure steps "
                "matched are in it",
            )
        )
    judged = tuple(
        n for n in INVARIANTS if n not in NEEDS_PAYLOADS or "in part" in NEEDS_PAYLOADS[n]
    )
    return CheckReport(source, "log", judged, tuple(findings), tuple(not_judged), len(runs))
