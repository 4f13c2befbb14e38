"""Rendering: a scenario written back as YAML reads back equal, whatever its strings hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.scenario.model import Scenario
from sim.scenario.parse import ScenarioError, load_scenario, parse_scenario
from sim.scenario.render import render_scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"


def _comparable(s: Scenario) -> Any:
    return (
        attrs.evolve(s, path="", steps=()),
        [(located.kind, located.step) for located in s.steps],
    )


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.yaml")), ids=lambda p: p.name)
def test_render_round_trips_every_shipped_scenario(path: Path) -> None:
    scenario = load_scenario(path)
    again = parse_scenario(render_scenario(scenario), str(path))
    assert _comparable(again) == _comparable(scenario)


_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=20,
).filter(lambda t: t.strip() != "")


@st.composite
def scenarios(draw: st.DrawFn) -> str:
    """Random valid scenario YAML with awkward strings (quotes, colons, '#', unicode)."""
    convs = ["c1", "c2"]
    lines = [
        f"name: {_yaml(draw(_text))}",
        f"description: {_yaml(draw(_text))}",
        f"seed: {draw(st.integers(0, 2**53))}",
        "profiles:",
        "  p1: {runtime_key: " + _yaml(draw(_text)) + "}",
        "  p2: {runtime_key: r2, latency_ms: 5, jitter_ms: 3, tool_rounds: 1, replies: ["
        + _yaml(draw(_text))
        + "]}",
        "conversations:",
        "  c1: {profile: p1}",
        "  c2: {profile: p2, session: " + _yaml(draw(_text)) + "}",
        "steps:",
    ]
    turns: list[tuple[str, str]] = []
    for i in range(draw(st.integers(1, 8))):
        conv = draw(st.sampled_from(convs))
        kind = draw(st.sampled_from(["send", "switch", "sleep", "expect", "wait", "fault"]))
        if kind == "send" or (not turns and kind == "expect"):
            wait = draw(st.booleans())
            lines.append(
                f"  - send: {{conv: {conv}, turn: x{i}, prompt: {_yaml(draw(_text))}, "
                f"wait: {str(wait).lower()}}}"
            )
            turns.append((f"x{i}", conv))
        elif kind == "switch":
            at = draw(st.sampled_from(["", ", at: random, within_ms: 70", ", at: 5"]))
            lines.append(f"  - switch_profile: {{conv: {conv}, profile: p2{at}}}")
        elif kind == "sleep":
            lines.append(f"  - sleep: {draw(st.integers(0, 500))}")
        elif kind == "wait":
            lines.append("  - wait_idle: all")
        elif kind == "fault":
            times = draw(st.integers(1, 3))
            lines.append(f"  - inject_fault: {{conv: {conv}, kind: transient, times: {times}}}")
        else:
            label, owner = draw(st.sampled_from(turns))
            lines.append(
                f"  - expect_turn: {{conv: {owner}, turn: {label}, phases: [final], "
                f"runtime_key: {_yaml(draw(_text))}}}"
            )
    return "\n".join(lines) + "\n"


def _yaml(text: str) -> str:
    """A YAML double-quoted scalar with every non-ASCII character escaped (exact input)."""
    import json

    def escape(ch: str) -> str:
        code = ord(ch)
        return ch if code < 0x7F else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"

    return "".join(escape(ch) for ch in json.dumps(text, ensure_ascii=False))


def test_render_escapes_what_yaml_would_fold_or_refuse() -> None:
    awkward = "line\u2028sep\u0085nel\ufeffbom\x7fdel\x9fc1\ttab\"q'#: ok😀"
    scenario = parse_scenario(
        "name: x\nprofiles: {p: {runtime_key: r}}\nconversations: {c1: {profile: p}}\n"
        f"steps:\n  - send: {{conv: c1, prompt: {_yaml(awkward)}}}\n",
        "x.yaml",
    )
    again = parse_scenario(render_scenario(scenario), "x.yaml")
    assert again.steps[0].step.prompt == awkward
    plain_but_for_a_newline = attrs.evolve(scenario.conversations[0], session="s1\n")
    odd = attrs.evolve(scenario, conversations=(plain_but_for_a_newline,))
    again = parse_scenario(render_scenario(odd), "x.yaml")
    assert again.conversations[0].session == "s1\n"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_render_round_trips_random_scenarios(text: str) -> None:
    try:
        scenario = parse_scenario(text, "gen.yaml")
    except ScenarioError as exc:  # the generator only writes valid files
        raise AssertionError(f"generator wrote an invalid scenario: {exc}\n{text}") from None
    rendered = render_scenario(scenario, header=["a header: with # and 'quotes'"])
    assert _comparable(parse_scenario(rendered, "gen.yaml")) == _comparable(scenario)
