"""sim.logs.select: the filter of ``turnsim logs`` on logs written by real runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sim.logs.read import read_events
from sim.logs.select import LogFilter, Selector
from tests.logs.log_fixtures import late_events, run_log


@pytest.fixture(scope="module")
def late_log(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return late_events(tmp_path_factory.mktemp("late"))


def _seqs(events: list[dict[str, Any]], spec: LogFilter) -> list[int]:
    select = Selector(spec)
    return [e["seq"] for e in events if select(e)]


def _started(events: list[dict[str, Any]], label: str) -> dict[str, Any]:
    return next(e for e in events if e["event"] == "inference.started" and e["turn"] == label)


def test_turn_filter_follows_the_turn_through_its_ids(late_log: list[dict[str, Any]]) -> None:
    t2 = _started(late_log, "t2")
    turn_id, inference_id = t2["turn_id"], t2["inference_id"]
    expected = [
        e["seq"]
        for e in late_log
        if e.get("turn") == "t2"
        or e.get("turn_id") == turn_id
        or e.get("inference_id") == inference_id
        or e.get("inflight_turn_id") == turn_id
    ]
    assert _seqs(late_log, LogFilter(turns=("t2",))) == expected
    by_name = {e["seq"]: e["event"] for e in late_log}
    picked = [by_name[s] for s in expected]
    assert "profile.switched" in picked and picked.count("invariant.violated") == 6
    # a short id works too (not for events that carry only the label)
    label_only = ("prompt.queued", "step.started", "expectation.failed")
    short = _seqs(late_log, LogFilter(turns=(turn_id[:8],)))
    assert short == [s for s in expected if by_name[s] not in label_only]
    assert _seqs(late_log, LogFilter(turns=(turn_id[:3],))) == []  # too short for a prefix


def test_turn_filter_tells_turns_apart_when_they_share_a_turn_id(tmp_path: Path) -> None:
    log = run_log(tmp_path, "inflight_switch.yaml", "--variant", "default-turn-id")
    events = read_events(str(log))
    t2 = _started(events, "t2")
    assert t2["turn_id"] == ""  # every save of every turn goes under the constant 'turn'
    select = Selector(LogFilter(turns=("t2",)))
    picked = [e for e in events if select(e)]
    saves = [e for e in picked if e["event"].startswith(("snapshot.", "turn."))]
    assert len(saves) == 5
    assert {e["inference_id"] for e in saves} == {t2["inference_id"]}
    assert {e["turn_id"] for e in saves} == {"turn"}


def test_conv_runtime_time_level_and_event_filters(late_log: list[dict[str, Any]]) -> None:
    with_conv = [e["seq"] for e in late_log if e.get("conv_id") == "inflight-switch.c1"]
    assert len(with_conv) > 30
    for pattern in ("c1", "inflight-switch.c1", "*.c1"):
        assert _seqs(late_log, LogFilter(convs=(pattern,))) == with_conv
    assert _seqs(late_log, LogFilter(convs=("c2",))) == []

    planner = _seqs(late_log, LogFilter(runtimes=("planner",)))
    assert planner == _seqs(late_log, LogFilter(runtimes=("planner@*",)))
    assert planner == [
        e["seq"]
        for e in late_log
        if "planner@v1"
        in (
            e.get("runtime_key"),
            e.get("carried_runtime_key"),
            e.get("previous_runtime_key"),
            e.get("inflight_runtime_key"),
            e.get("expected") if e["event"] == "invariant.violated" else None,
        )
    ]

    window = _seqs(late_log, LogFilter(since_ms=150, until_ms=300))
    assert window == [e["seq"] for e in late_log if 150 <= e["t_ms"] <= 300]
    assert {e["t_ms"] for e in late_log if e["seq"] in window} == {150, 300}

    warnings = _seqs(late_log, LogFilter(level="warning"))
    assert warnings == [e["seq"] for e in late_log if e["level"] == "warning"]
    assert _seqs(late_log, LogFilter(events=("snapshot.*",), runtimes=("inventory@v1",))) == [
        e["seq"]
        for e in late_log
        if e["event"].startswith("snapshot.") and e.get("runtime_key") == "inventory@v1"
    ]
