"""The director: plays each step in order, logs it, counts checks, reports failed
expectations at their step, and waits for every conversation at the end."""

from __future__ import annotations

import anyio

from sim.scenario.invariants import INVARIANTS
from sim.scenario.parse import parse_scenario
from sim.scenario.runner import run_scenario

SCENARIO = """\
name: directed
seed: 4
profiles:
  inventory: {runtime_key: inventory@v1}
  planner: {runtime_key: planner@v1}
conversations:
  c1: {session: s1, profile: inventory}
  c2: {session: s2, profile: planner}
steps:
  - send: {conv: c1, turn: t1, prompt: one}
  - switch_profile: {conv: c1, profile: planner}
  - expect_turn: {conv: c1, turn: t1, runtime_key: inventory@v1}
  - expect_conversation: {conv: c1, current_runtime_key: inventory@v1}
  - sleep: 10
  - wait_idle: all
  - send: {conv: c2, turn: u1, prompt: two, wait: false}
"""


def run(text: str):
    return anyio.run(run_scenario, parse_scenario(text, "directed.yaml"))


def test_each_step_is_logged_with_what_it_concerns() -> None:
    result = run(SCENARIO)
    started = [e for e in result.events if e["event"] == "step.started"]
    assert [(e["step"], e["kind"], e["line"]) for e in started] == [
        (1, "send", 10),
        (2, "switch_profile", 11),
        (3, "expect_turn", 12),
        (4, "expect_conversation", 13),
        (5, "sleep", 14),
        (6, "wait_idle", 15),
        (7, "send", 16),
    ]
    assert [(e.get("conv_id"), e.get("turn")) for e in started] == [
        ("directed.c1", "t1"),
        ("directed.c1", None),
        ("directed.c1", "t1"),
        ("directed.c1", None),
        (None, None),
        (None, None),  # wait_idle: all names no conversation in particular
        ("directed.c2", "u1"),
    ]


def test_a_failed_expectation_is_reported_at_its_step_and_the_run_goes_on() -> None:
    result = run(SCENARIO)
    assert result.checks == 2 + len(INVARIANTS)
    [failure] = result.failures
    assert (failure.kind, failure.name, failure.step) == ("expectation", "expect_conversation", 4)
    assert failure.where == "directed.yaml:13"
    assert "current_runtime_key is 'planner@v1', expected 'inventory@v1'" in failure.message
    [logged] = [e for e in result.events if e["event"] == "expectation.failed"]
    assert (logged["step"], logged["conv_id"]) == (4, "directed.c1")
    assert any(e["event"] == "step.started" and e["step"] == 7 for e in result.events)


def test_the_run_ends_when_every_conversation_is_idle() -> None:
    result = run(SCENARIO.replace("key: inventory@v1}\n  - sleep", "key: planner@v1}\n  - sleep"))
    assert result.passed, result.describe()
    finished = [e for e in result.events if e["event"] == "inference.finished"]
    assert len(finished) == 2  # the last send did not wait; the director did
    assert result.events[-1]["event"] == "scenario.finished"
