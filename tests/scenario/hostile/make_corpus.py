"""Write the malformed-scenario corpus: ``python tests/hostile/make_corpus.py``.

Each case is a file in this folder plus its entry in ``expected.json``: the line and
column the loader must point at and a phrase its message must contain. The files are
committed; ``tests/test_hostile_scenarios.py`` checks they match this script.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent

GOOD_HEAD = """\
name: hostile
profiles:
  inventory: {runtime_key: inventory@v1}
  planner: {runtime_key: planner@v1}
conversations:
  c1: {session: s1, profile: inventory}
"""


def with_steps(*steps: str) -> str:
    return GOOD_HEAD + "steps:\n" + "".join(f"  - {s}\n" for s in steps)


def one_profile(fields: str) -> str:
    """A scenario whose one profile ``p`` has these fields (flow mapping body)."""
    return (
        "name: x\nprofiles:\n  p: {" + fields + "}\n"
        "conversations: {c1: {profile: p}}\nsteps: [{sleep: 1}]\n"
    )


def laughs(levels: int = 9, fan: int = 10) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels + 1):
        refs = ", ".join([f"*a{i - 1}"] * fan)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


#: name -> (content, line, column, phrase)
CASES: dict[str, tuple[bytes | str, int, int, str]] = {
    # -- not YAML ------------------------------------------------------------------------
    "yaml_unclosed_flow.yaml": (with_steps("send: {conv: c1, prompt: hi"), 9, 1, "invalid YAML"),
    "yaml_bad_indent.yaml": ("name: x\n  profiles: 1\n", 2, 11, "invalid YAML"),
    "yaml_tab_indent.yaml": ("name: x\nprofiles:\n\tinventory: 1\n", 3, 1, "invalid YAML"),
    "yaml_unterminated_quote.yaml": ('name: "x\nprofiles: {}\n', 3, 1, "invalid YAML"),
    "yaml_undefined_alias.yaml": ("name: *nothing\n", 1, 7, "invalid YAML"),
    "yaml_two_documents.yaml": ("name: a\n---\nname: b\n", 2, 1, "invalid YAML"),
    "yaml_mapping_in_value.yaml": ("name: a: b\n", 1, 8, "invalid YAML"),
    "yaml_bad_directive.yaml": ("%YAML 9.9\n--- \nname: x\n", 1, 1, "invalid YAML"),
    "yaml_duplicate_key.yaml": (GOOD_HEAD + "name: again\nsteps: []\n", 7, 1, "duplicate key"),
    "empty.yaml": ("", 1, 1, "empty file"),
    "only_comments.yaml": ("# nothing here\n\n   \n", 1, 1, "empty file"),
    "top_is_list.yaml": ("- name: x\n", 1, 1, "must be a mapping"),
    "top_is_scalar.yaml": ("just a sentence\n", 1, 1, "must be a mapping"),
    # -- wrong types ---------------------------------------------------------------------
    "name_is_list.yaml": (
        "name: [a, b]\n" + GOOD_HEAD.split("\n", 1)[1] + "steps: []\n",
        1,
        7,
        "name must be a single value",
    ),
    "seed_is_text.yaml": (
        GOOD_HEAD + "seed: lucky\nsteps: [{sleep: 1}]\n",
        7,
        7,
        "seed must be an integer",
    ),
    "seed_is_float.yaml": (
        GOOD_HEAD + "seed: 1.5\nsteps: [{sleep: 1}]\n",
        7,
        7,
        "seed must be an integer",
    ),
    "seed_is_bool.yaml": (
        GOOD_HEAD + "seed: true\nsteps: [{sleep: 1}]\n",
        7,
        7,
        "seed must be an integer",
    ),
    "seed_negative.yaml": (GOOD_HEAD + "seed: -1\nsteps: [{sleep: 1}]\n", 7, 7, "between 0 and"),
    "profiles_is_list.yaml": (
        "name: x\nprofiles: [inventory]\nconversations: {c1: {profile: inventory}}\nsteps: []\n",
        2,
        11,
        "profiles must be a mapping",
    ),
    "profile_latency_text.yaml": (
        one_profile("runtime_key: r, latency_ms: fast"),
        3,
        35,
        "latency_ms must be an integer",
    ),
    "profile_runtime_list.yaml": (
        one_profile("runtime_key: [a]"),
        3,
        20,
        "runtime_key must be a single value",
    ),
    "tool_rounds_negative.yaml": (
        one_profile("runtime_key: r, tool_rounds: -2"),
        3,
        36,
        "between 0 and 100",
    ),
    "replies_is_text.yaml": (
        one_profile("runtime_key: r, replies: hello"),
        3,
        32,
        "must be a list",
    ),
    "conversations_is_text.yaml": (
        "name: x\nprofiles: {p: {runtime_key: r}}\nconversations: c1\nsteps: [{sleep: 1}]\n",
        3,
        16,
        "conversations must be a mapping",
    ),
    "steps_is_mapping.yaml": (GOOD_HEAD + "steps: {send: 1}\n", 7, 8, "steps must be a list"),
    "steps_empty.yaml": (GOOD_HEAD + "steps: []\n", 7, 8, "steps is empty"),
    "step_two_kinds.yaml": (with_steps("{sleep: 1, crash: c1}"), 8, 5, "exactly one step kind"),
    "step_is_scalar.yaml": (with_steps("sleep"), 8, 5, "exactly one step kind"),
    "wait_is_text.yaml": (
        with_steps("send: {conv: c1, prompt: hi, wait: maybe}"),
        8,
        40,
        "wait must be true or false",
    ),
    "within_ms_zero.yaml": (
        with_steps("switch_profile: {conv: c1, profile: planner, at: random, within_ms: 0}"),
        8,
        73,
        "between 1 and",
    ),
    "at_is_text.yaml": (
        with_steps("switch_profile: {conv: c1, profile: planner, at: later}"),
        8,
        54,
        "at must be 'random' or a delay",
    ),
    "phases_is_text.yaml": (
        with_steps(
            "send: {conv: c1, turn: t1, prompt: hi}",
            "expect_turn: {conv: c1, turn: t1, phases: final}",
        ),
        9,
        47,
        "must be a list",
    ),
    "count_negative.yaml": (
        with_steps("expect_turn_count: {conv: c1, count: -3}"),
        8,
        42,
        "between 0 and",
    ),
    "prompt_empty.yaml": (with_steps('send: {conv: c1, prompt: "  "}'), 8, 30, "must not be empty"),
    "key_is_number.yaml": (
        GOOD_HEAD + "steps:\n  - send: {conv: c1, prompt: hi, 7: x}\n",
        8,
        34,
        "keys in step 1 (send) must be strings",
    ),
    # -- unknown names -------------------------------------------------------------------
    "unknown_top_field.yaml": (
        GOOD_HEAD + "sed: 1\nsteps: [{sleep: 1}]\n",
        7,
        1,
        "unknown field 'sed'",
    ),
    "missing_steps.yaml": (GOOD_HEAD, 1, 1, "missing required field 'steps'"),
    "unknown_step.yaml": (with_steps("teleport: {conv: c1}"), 8, 5, "unknown step 'teleport'"),
    "unknown_step_field.yaml": (
        with_steps("send: {conv: c1, prompt: hi, colour: red}"),
        8,
        34,
        "unknown field 'colour'",
    ),
    "unknown_conversation.yaml": (
        with_steps("send: {conv: c9, prompt: hi}"),
        8,
        18,
        "unknown conversation 'c9'",
    ),
    "unknown_profile_conv.yaml": (
        "name: x\nprofiles: {p: {runtime_key: r}}\n"
        "conversations: {c1: {profile: q}}\nsteps: [{sleep: 1}]\n",
        3,
        31,
        "unknown profile 'q'",
    ),
    "unknown_profile_switch.yaml": (
        with_steps("switch_profile: {conv: c1, profile: nobody}"),
        8,
        41,
        "unknown profile 'nobody'",
    ),
    "unknown_turn.yaml": (
        with_steps("expect_turn: {conv: c1, turn: t7}"),
        8,
        35,
        "unknown turn 't7'",
    ),
    "turn_of_other_conv.yaml": (
        GOOD_HEAD.replace("conversations:\n", "conversations:\n  c2: {profile: planner}\n")
        + "steps:\n  - send: {conv: c2, turn: t1, prompt: hi}\n"
        + "  - expect_turn: {conv: c1, turn: t1}\n",
        10,
        35,
        "belongs to conversation 'c2'",
    ),
    "duplicate_turn.yaml": (
        with_steps(
            "send: {conv: c1, turn: t1, prompt: a}", "send: {conv: c1, turn: t1, prompt: b}"
        ),
        9,
        28,
        "already used",
    ),
    "unknown_phase.yaml": (
        with_steps("inject_fault: {phase: mid_inference}"),
        8,
        27,
        "phase 'mid_inference' is not known",
    ),
    "unknown_point.yaml": (
        with_steps("inject_fault: {point: disk.melt}"),
        8,
        27,
        "point 'disk.melt' is not known",
    ),
    "unknown_fault_kind.yaml": (
        with_steps("inject_fault: {kind: sometimes}"),
        8,
        26,
        "kind 'sometimes' is not known",
    ),
    "unknown_outcome.yaml": (
        with_steps(
            "send: {conv: c1, turn: t1, prompt: hi}",
            "expect_turn: {conv: c1, turn: t1, outcome: exploded}",
        ),
        9,
        48,
        "outcome 'exploded' is not known",
    ),
    "unknown_resave_source.yaml": (
        with_steps(
            "send: {conv: c1, turn: t1, prompt: hi}",
            "resave: {conv: c1, turn: t1, from: clipboard}",
        ),
        9,
        40,
        "from 'clipboard' is not known",
    ),
    "failure_turn_without_conv.yaml": (
        with_steps("send: {conv: c1, turn: t1, prompt: hi}", "expect_failure: {turn: t1}"),
        9,
        28,
        "needs conv",
    ),
    # -- huge numbers --------------------------------------------------------------------
    "seed_huge.yaml": (
        GOOD_HEAD + "seed: 18446744073709551616\nsteps: [{sleep: 1}]\n",
        7,
        7,
        "between 0 and",
    ),
    "seed_enormous.yaml": (
        GOOD_HEAD + "seed: " + "9" * 5000 + "\nsteps: [{sleep: 1}]\n",
        7,
        7,
        "between 0 and",
    ),
    "latency_huge.yaml": (
        one_profile("runtime_key: r, latency_ms: 99999999999999"),
        3,
        35,
        "between 0 and",
    ),
    "latency_inf.yaml": (
        one_profile("runtime_key: r, latency_ms: .inf"),
        3,
        35,
        "must be an integer",
    ),
    "sleep_huge.yaml": (with_steps("sleep: 1000000000000"), 8, 12, "between 0 and"),
    "times_huge.yaml": (with_steps("inject_fault: {times: 1.0e+300}"), 8, 27, "must be an integer"),
    "store_latency_huge.yaml": (
        GOOD_HEAD + "store_latency_ms: 4000000000\nsteps: [{sleep: 1}]\n",
        7,
        19,
        "between 0 and",
    ),
    "retry_attempts_huge.yaml": (
        GOOD_HEAD + "retry: {attempts: 1000}\nsteps: [{sleep: 1}]\n",
        7,
        19,
        "between 1 and 100",
    ),
    # -- deep nesting and alias bombs ----------------------------------------------------
    "deep_lists.yaml": ("name: " + "[" * 5000 + "]" * 5000 + "\n", 1, 1006, "nesting"),
    "deep_mappings.yaml": ("".join("  " * i + f"k{i}:\n" for i in range(300)), 34, 67, "nesting"),
    "deep_but_parsable.yaml": (
        "name: x\nprofiles: " + "[" * 40 + "]" * 40 + "\nconversations: {}\nsteps: []\n",
        2,
        43,
        "nesting deeper than",
    ),
    "recursive_alias.yaml": ("name: &a [*a]\n", 1, 7, "nesting deeper than"),
    "billion_laughs.yaml": (laughs(), 1, 1, "unknown field 'a0'"),
    # -- binary garbage ------------------------------------------------------------------
    "binary_random.bin": (bytes((i * 97 + 13) % 256 for i in range(512)), 1, 1, "not UTF-8"),
    "binary_png.bin": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64), 1, 1, "not UTF-8"),
    "nul_in_text.yaml": ("name: x\nprofiles: {}\x00\n", 2, 1, "NUL byte"),
    "utf16.yaml": ("name: x\n".encode("utf-16"), 1, 1, "not UTF-8"),
    "latin1.yaml": ("name: caf\xe9\n".encode("latin-1"), 1, 1, "not UTF-8"),
    "control_chars.yaml": ("name: x\x07y\n", 1, 8, "invalid YAML"),
}


#: Cases the loader gets wrong today (the test marks them as expected failures, strictly).
BUGS: dict[str, str] = {}  # known loader bugs, pinned as strict xfails (none open)


def write() -> None:
    expected = {}
    for name, (content, line, column, phrase) in CASES.items():
        data = content.encode() if isinstance(content, str) else content
        (HERE / name).write_bytes(data)
        expected[name] = {"line": line, "column": column, "contains": phrase}
        if name in BUGS:
            expected[name]["bug"] = BUGS[name]
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    write()
