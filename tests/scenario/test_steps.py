"""Steps: each kind is one class (its YAML fields, parser, handler and renderer), and the
registry, the docs and the renderer agree on every one of them."""

from __future__ import annotations

import re
from pathlib import Path

import attrs
import pytest

from sim.scenario.actions import InjectFault, Send, Sleep, SwitchProfile, WaitIdle
from sim.scenario.model import STEP_KINDS
from sim.scenario.parse import ScenarioError, parse_scenario
from sim.scenario.render import render_scenario
from sim.scenario.steps import Step

ROOT = Path(__file__).resolve().parents[2]

HEAD = """\
name: every-step
profiles:
  inventory: {runtime_key: inventory@v1}
  planner: {runtime_key: planner@v1}
conversations:
  c1: {session: s1, profile: inventory}
  c2: {profile: planner}
steps:
"""

#: Every step kind once, each with fields that differ from their defaults.
EVERY_KIND = HEAD + "".join(
    f"  - {line}\n"
    for line in (
        "send: {conv: c1, turn: t1, prompt: hello, wait: false, profile: planner}",
        "switch_profile: {conv: c1, profile: inventory, at: random, within_ms: 70}",
        "update_profile: {profile: planner, runtime_key: planner@v2}",
        "wait_idle: all",
        "sleep: 25",
        "cancel: c2",
        "crash: c2",
        "make_readonly: {}",
        "inject_fault: {point: store.save, conv: c2, phase: final, pipeline: snapshot,"
        " kind: transient, times: 2, skip: 1}",
        "restart_server: {}",
        "schedule: {conv: c2, turn: r1, prompt: remind me, at: random, within_ms: 30}",
        "resave: {conv: c1, turn: t1, runtime_key: planner@v1, refusal_expected: true}",
        "cli_save: {conv: c2, turn: k1, prompt: hi, runtime_key: planner, runtime_as: nested,"
        " session: s9, metadata_session: false, refusal_expected: true}",
        "expect_turn: {conv: c1, turn: t1, runtime_key: planner@v1, phases: [final],"
        " outcome: completed, session: s1}",
        "expect_turn_count: {conv: c1, count: 1}",
        "expect_conversation: {conv: c1, current_runtime_key: '', session: s1}",
        "expect_failure: {conv: c1, turn: t1, phase: final, pipeline: final, count: 0,"
        " contains: boom}",
        "expect_race: {conv: c1, kind: switch_in_flight, min_seeds: 3}",
    )
)


def test_every_kind_is_one_registered_class() -> None:
    assert len(STEP_KINDS) == 18
    for key, kind in STEP_KINDS.items():
        assert issubclass(kind, Step) and attrs.has(kind)
        assert kind.key == key
        assert not set(kind.required) & set(kind.optional), key
        assert kind.shorthand is None or kind.shorthand in kind.required, key


def test_the_docs_list_every_kind_in_registry_order() -> None:
    docs = (ROOT / "docs" / "scenarios.md").read_text()
    table = re.findall(r"^\| `([a-z_]+)` \| ", docs.split("## Steps", 1)[1], re.M)
    assert table[: len(STEP_KINDS)] == list(STEP_KINDS)


def test_every_kind_reads_back_what_it_writes() -> None:
    scenario = parse_scenario(EVERY_KIND, "every.yaml")
    assert [s.kind for s in scenario.steps] == list(STEP_KINDS)
    again = parse_scenario(render_scenario(scenario), "every.yaml")
    assert [s.step for s in again.steps] == [s.step for s in scenario.steps]
    assert all(s.kind == type(s.step).key for s in scenario.steps)


def test_defaults_are_left_out_when_written() -> None:
    assert Send("c1", "hi").to_yaml() == [("conv", "c1"), ("prompt", "hi")]
    assert InjectFault().to_yaml() == []
    assert SwitchProfile("c1", "p", within_ms=5).to_yaml() == [
        ("conv", "c1"),
        ("profile", "p"),
        ("within_ms", 5),
    ]


def test_what_a_step_names() -> None:
    steps = {s.kind: s.step for s in parse_scenario(EVERY_KIND, "every.yaml").steps}
    named = {
        key: (step.conversation(), step.turn_defined(), step.turn_needed(), step.profile_named())
        for key, step in steps.items()
    }
    assert named == {
        "send": ("c1", "t1", None, "planner"),
        "switch_profile": ("c1", None, None, "inventory"),
        "update_profile": (None, None, None, "planner"),
        "wait_idle": ("all", None, None, None),
        "sleep": (None, None, None, None),
        "cancel": ("c2", None, None, None),
        "crash": ("c2", None, None, None),
        "make_readonly": (None, None, None, None),
        "inject_fault": ("c2", None, None, None),
        "restart_server": (None, None, None, None),
        "schedule": ("c2", "r1", None, None),
        "resave": ("c1", None, "t1", None),
        "cli_save": ("c2", "k1", None, None),
        "expect_turn": ("c1", None, "t1", None),
        "expect_turn_count": ("c1", None, None, None),
        "expect_conversation": ("c1", None, None, None),
        "expect_failure": ("c1", None, "t1", None),
        "expect_race": ("c1", None, None, None),
    }
    checks = [key for key, kind in STEP_KINDS.items() if kind.is_check]
    assert checks == [k for k in STEP_KINDS if k.startswith("expect_")]


def test_simpler_steps_for_the_shrinker() -> None:
    assert Send("c1", "hi", wait=False).simpler() == Send("c1", "hi")
    assert Send("c1", "hi").simpler() is None
    assert SwitchProfile("c1", "p", at=5, within_ms=9).simpler() == SwitchProfile("c1", "p")
    assert SwitchProfile("c1", "p").simpler() is None
    assert InjectFault(times=3).simpler() == InjectFault()
    assert InjectFault().simpler() is None
    assert Sleep(5).simpler() is None and WaitIdle("all").simpler() is None


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (
            "switch_profile: {conv: c1, profile: planner, at: true}",
            "switch_profile: at must be 'random' or a delay in virtual milliseconds, got a boolean",
        ),
        ("expect_failure: {turn: t1}", "expect_failure: turn needs conv as well"),
        ("send: {conv: c1, turn: t1, prompt: again}", "send: turn name 't1' is already used"),
        (
            "resave: {conv: c2, turn: t1}",
            "resave: turn: conversation 'c2' has no turn 't1' "
            "(a turn 't1' belongs to conversation 'c1')",
        ),
        (
            "expect_turn: {conv: c1, turn: t1, phases: [final, later]}",
            "expect_turn: phases item 'later' is not known",
        ),
        ("inject_fault: {kind: sometimes}", "inject_fault: kind 'sometimes' is not known"),
        (
            "wait_idle: c9",
            "wait_idle: conv: unknown conversation 'c9'; expected one of c1, c2 or 'all'",
        ),
        ("sleep: -1", "sleep: ms must be between 0 and 86400000, got -1"),
        (
            "update_profile: {profile: planer, runtime_key: planner@v2}",
            "update_profile: profile: unknown profile 'planer'; expected one of inventory, planner",
        ),
        (
            "cli_save: {conv: c1, runtime_key: x@v1, runtime_as: yaml}",
            "cli_save: runtime_as 'yaml' is not known; expected one of string, object, nested",
        ),
        ("cli_save: {conv: c1, turn: t1, runtime_key: x}", "cli_save: turn name 't1' is already"),
        ("cli_save: {conv: c1}", "step 2 (cli_save) is missing required field 'runtime_key'"),
    ],
)
def test_field_errors_name_the_step_and_field(step: str, message: str) -> None:
    text = HEAD + "  - send: {conv: c1, turn: t1, prompt: hi}\n" + f"  - {step}\n"
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "x.yaml")
    assert info.value.line == 10
    assert message in info.value.message
