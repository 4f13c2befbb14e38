"""The loader: scenario files in, frozen values or one `file:line:column: message` out."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.scenario.parse import ScenarioError, load_scenario, parse_scenario

GOOD = """\
name: t
seed: 1
profiles:
  inventory: {runtime_key: inventory@v1}
conversations:
  c1: {session: s1, profile: inventory}
steps:
  - send: {conv: c1, turn: t1, prompt: hi}
"""


@pytest.mark.parametrize(
    ("edit", "where", "message"),
    [
        (
            ("  - send: {conv: c1, turn: t1, prompt: hi}", "  - sned: {conv: c1}"),
            "8:5",
            "unknown step 'sned'; expected one of send, switch_profile",
        ),
        (
            ("{conv: c1, turn: t1", "{conv: c9, turn: t1"),
            "8:18",
            "unknown conversation 'c9'; expected one of c1",
        ),
        (
            ("profile: inventory}", "profile: planer}"),
            "6:30",
            "unknown profile 'planer'; expected one of inventory",
        ),
        (("seed: 1", "seed: one"), "2:7", "seed must be an integer, got a string"),
        (("prompt: hi}", "prompt: hi, wait: maybe}"), "8:50", "send: wait must be true or false"),
        (
            ("{conv: c1, turn: t1, prompt: hi}", "{conv: c1, turn: t1}"),
            "8:11",
            "missing required field 'prompt'",
        ),
        (
            ("{runtime_key: inventory@v1}", "{runtime_key: inventory@v1, latncy_ms: 3}"),
            "4:42",
            "unknown field 'latncy_ms'",
        ),
        (
            ("  - send: {conv: c1, turn: t1, prompt: hi}", "  - expect_turn: {conv: c1, turn: t7}"),
            "8:35",
            "unknown turn 't7'",
        ),
        (("profiles:", "profiles: ["), "5:1", "invalid YAML"),
    ],
)
def test_malformed_files_name_file_line_column(
    tmp_path: Path, edit: tuple[str, str], where: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    old, new = edit
    assert old in GOOD
    path.write_text(GOOD.replace(old, new))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value).startswith(f"{path}:{where}: "), str(info.value)
    assert message in str(info.value)


def test_the_example_parses() -> None:
    scenario = parse_scenario(GOOD)
    assert [s.kind for s in scenario.steps] == ["send"]


# -- positions: what an editor shows ----------------------------------------------------

BAD_STEP = GOOD.replace("  - send: {conv: c1, turn: t1, prompt: hi}", "  - sned: {conv: c1}")


@pytest.mark.parametrize("brk", ["\r", "\x85", "\u2028", "\u2029"], ids=repr)
def test_only_newline_ends_a_line(brk: str) -> None:
    """YAML also breaks lines at a lone CR, NEL, LS and PS; editors show them within a line.
    (This mismatch made the fuzz test flaky: YAML's line 3 in a text without a newline.)"""
    text = BAD_STEP.replace("\n", brk)
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "x.yaml")
    assert "unknown step 'sned'" in info.value.message  # YAML still reads the structure
    assert (info.value.line, info.value.column) == (1, text.index("sned") + 1)


def test_crlf_counts_as_one_line_break() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(BAD_STEP.replace("\n", "\r\n"), "x.yaml")
    assert (info.value.line, info.value.column) == (8, 5)


def test_a_byte_order_mark_takes_no_column() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario("\ufeff" + BAD_STEP, "x.yaml")
    assert (info.value.line, info.value.column) == (8, 5)
    with pytest.raises(ScenarioError) as info:
        parse_scenario("\ufeffname: [", "x.yaml")
    assert (info.value.line, info.value.column) == (1, 8)


def test_a_refused_character_is_counted_in_characters_not_bytes() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario("name: ééé\x07\n", "x.yaml")
    assert (info.value.line, info.value.column) == (1, 10)
    assert "control characters are not allowed" in info.value.message


def test_an_error_at_the_end_points_past_the_last_character() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario("name: [", "x.yaml")
    assert (info.value.line, info.value.column) == (1, 8)  # not line 2: there is none


def test_step_positions_count_lines_the_same_way() -> None:
    text = GOOD.replace("prompt: hi}", 'prompt: "a\u2028b"}') + "  - sleep: 5\n"
    scenario = parse_scenario(text, "x.yaml")
    assert [(s.where.line, s.where.column) for s in scenario.steps] == [(8, 5), (9, 5)]
    assert str(scenario.steps[1].where) == "x.yaml:9"
