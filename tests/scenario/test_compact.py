"""Scenarios that scale: conversation templates (count), repeat blocks and turn names
scoped to their conversation; and a file's problems reported together."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from sim.scenario.parse import ScenarioError, parse_scenario
from sim.scenario.render import render_scenario
from sim.scenario.runner import run_scenario

HEAD = """\
name: load
seed: 5
profiles:
  inventory: {runtime_key: inventory@v1, jitter_ms: 20}
  planner: {runtime_key: planner@v1}
"""

COMPACT = (
    HEAD
    + """\
conversations:
  user: {profile: inventory, count: 3, session: "s{i}"}
steps:
  - repeat:
      times: 2
      steps:
        - send: {conv: user, turn: "t{i}", prompt: hello, wait: false}
        - switch_profile: {conv: user, profile: planner, at: random, within_ms: 200}
        - wait_idle: user
  - expect_turn_count: {conv: user, count: 2}
  - expect_turn: {conv: user, turn: t1, runtime_key: inventory@v1}
"""
)


def long_form() -> str:
    """COMPACT written out by hand: one line per conversation and per send."""
    lines = [HEAD, "conversations:\n"]
    lines += [f'  user{i}: {{profile: inventory, session: "s{i}"}}\n' for i in (1, 2, 3)]
    lines.append("steps:\n")
    for r in (1, 2):
        for i in (1, 2, 3):
            lines.append(f'  - send: {{conv: user{i}, turn: "t{r}", prompt: hello, wait: false}}\n')
        for i in (1, 2, 3):
            lines.append(
                f"  - switch_profile: {{conv: user{i}, profile: planner, at: random,"
                " within_ms: 200}\n"
            )
        lines += [f"  - wait_idle: user{i}\n" for i in (1, 2, 3)]
    lines += [f"  - expect_turn_count: {{conv: user{i}, count: 2}}\n" for i in (1, 2, 3)]
    lines += [
        f"  - expect_turn: {{conv: user{i}, turn: t1, runtime_key: inventory@v1}}\n"
        for i in (1, 2, 3)
    ]
    return "".join(lines)


def test_a_template_and_a_repeat_expand_in_order() -> None:
    scenario = parse_scenario(COMPACT, "load.yaml")
    assert [c.name for c in scenario.conversations] == ["user1", "user2", "user3"]
    assert [c.session for c in scenario.conversations] == ["s1", "s2", "s3"]
    assert [(s.kind, s.step.conversation()) for s in scenario.steps[:4]] == [
        ("send", "user1"),
        ("send", "user2"),
        ("send", "user3"),
        ("switch_profile", "user1"),
    ]
    assert [s.step.turn_defined() for s in scenario.steps if s.kind == "send"] == [
        "t1",
        "t1",
        "t1",
        "t2",
        "t2",
        "t2",
    ]
    assert [s.index for s in scenario.steps] == list(range(1, len(scenario.steps) + 1))
    assert [s.step for s in scenario.steps] == [
        s.step for s in parse_scenario(long_form(), "load.yaml").steps
    ]
    # the compact file reads back from its expanded rendering as the same scenario
    again = parse_scenario(render_scenario(scenario), "load.yaml")
    assert [s.step for s in again.steps] == [s.step for s in scenario.steps]
    assert again.conversations == scenario.conversations


def _comparable(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k not in ("line", "path")} for e in events]


@pytest.mark.anyio
async def test_the_compact_form_runs_exactly_as_the_long_form() -> None:
    compact = await run_scenario(parse_scenario(COMPACT, "load.yaml"))
    written_out = await run_scenario(parse_scenario(long_form(), "load.yaml"))
    assert compact.passed and written_out.passed, compact.describe()
    assert compact.turns == 6
    assert _comparable(compact.events) == _comparable(written_out.events)


def test_turn_names_are_scoped_to_their_conversation() -> None:
    text = (
        HEAD
        + "conversations:\n  c1: {profile: inventory}\n  c2: {profile: planner}\n"
        + "steps:\n"
        + "  - send: {conv: c1, turn: t1, prompt: a}\n"
        + "  - send: {conv: c2, turn: t1, prompt: b}\n"
        + "  - expect_turn: {conv: c1, turn: t1, runtime_key: inventory@v1}\n"
        + "  - expect_turn: {conv: c2, turn: t1, runtime_key: planner@v1}\n"
    )
    scenario = parse_scenario(text, "scoped.yaml")
    result = anyio.run(run_scenario, scenario)
    assert result.passed, result.describe()


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (
            "  - repeat: {times: 2, steps: [{send: {conv: c1, turn: t, prompt: x}}]}\n",
            "inside repeat, {i} in the name makes one per round",
        ),
        ("  - send: {conv: c1, turn: 't{i}', prompt: x}\n", "use it inside repeat"),
        ("  - repeat: {times: 0, steps: [{sleep: 1}]}\n", "repeat: times must be between 1"),
        ("  - repeat: {times: 2, steps: []}\n", "repeat: steps is empty"),
        ("  - repeat: {times: 2}\n", "missing required field 'steps'"),
        (
            "  - repeat: {times: 1000000, steps: [{sleep: 1}, {sleep: 1}]}\n",
            "expand to more than 1000000 steps",
        ),
    ],
)
def test_repeat_problems_are_explained(steps: str, message: str) -> None:
    text = HEAD + "conversations:\n  c1: {profile: inventory}\nsteps:\n" + steps
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "r.yaml")
    assert message in str(caught.value)


def test_a_template_may_not_shadow_a_conversation() -> None:
    text = (
        HEAD
        + "conversations:\n  c1: {profile: inventory}\n  c: {profile: inventory, count: 2}\n"
        + "steps:\n  - sleep: 1\n"
    )
    with pytest.raises(ScenarioError, match="template makes conversation 'c1'"):
        parse_scenario(text, "t.yaml")


def test_every_problem_of_a_file_is_reported_once() -> None:
    text = """\
name: bad
profiles:
  inventory: {runtime_key: inventory@v1, latency: 3}
conversations:
  c1: {profile: invntory}
steps:
  - send: {conv: c1, turn: t1, prompt: hi, wiat: true}
  - expect_turn: {conv: c1, turn: t1, runtime_key: inventory@v1}
  - sned: {conv: c1}
  - expect_turn: {conv: c2, turn: t9}
  - repeat:
      times: 50
      steps:
        - sleep: -1
"""
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "bad.yaml")
    found = [(e.line, e.message.split(";")[0]) for e in caught.value.errors]
    assert found == [
        (3, "unknown field 'latency' in profile 'inventory'"),
        (5, "conversation 'c1': unknown profile 'invntory'"),
        (7, "unknown field 'wiat' in step 1 (send)"),  # its turn t1 still counts as named
        (9, "unknown step 'sned'"),
        (10, "expect_turn: conv: unknown conversation 'c2'"),
        (14, "sleep: ms must be between 0 and 86400000, got -1"),  # once, not 50 times
    ]
    lines = str(caught.value).splitlines()
    assert lines == [f"bad.yaml:{e.line}:{e.column}: {e.message}" for e in caught.value.errors]
    assert (caught.value.line, caught.value.column) == (3, 42)  # the first one


def test_the_number_of_problems_reported_is_bounded() -> None:
    text = (
        HEAD
        + "conversations:\n  c1: {profile: inventory}\nsteps:\n"
        + "".join(f"  - sleep: -{i}\n" for i in range(1, 200))
    )
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "many.yaml")
    assert len(caught.value.errors) == 50


def test_markers_and_xfail_are_read_and_written_back() -> None:
    text = HEAD.replace("seed: 5\n", "seed: 5\nmarkers: [slow, nightly]\nxfail: known bug\n")
    text += "conversations:\n  c1: {profile: inventory}\nsteps:\n  - sleep: 1\n"
    scenario = parse_scenario(text, "m.yaml")
    assert (scenario.markers, scenario.xfail) == (("slow", "nightly"), "known bug")
    again = parse_scenario(render_scenario(scenario), "m.yaml")
    assert (again.markers, again.xfail) == (scenario.markers, scenario.xfail)
    assert parse_scenario(text.replace("known bug", "true"), "m.yaml").xfail == "expected to fail"
    with pytest.raises(ScenarioError, match="'two words' is not a pytest marker name"):
        parse_scenario(text.replace("nightly", "'two words'"), "m.yaml")
    with pytest.raises(ScenarioError, match="xfail must be true or a reason"):
        parse_scenario(text.replace("known bug", "false"), "m.yaml")
