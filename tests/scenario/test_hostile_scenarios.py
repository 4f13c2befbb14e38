"""Hostile scenario files: every malformed input gets one clear line with file:line:column
and exit 2, never a traceback or a hang.

``tests/hostile/`` holds a corpus (bad YAML, wrong types, unknown names, huge numbers, deep
nesting, alias bombs, binary garbage) written by ``tests/hostile/make_corpus.py`` with the
position and phrase each file must be refused with (``expected.json``). Hypothesis then
fuzzes the loader with random text, random bytes, random YAML documents and mutations of
a valid scenario; whatever it loads must also run without an exception escaping.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sim.cli.main import cli
from sim.scenario.model import Scenario
from sim.scenario.parse import ScenarioError, load_scenario, parse_scenario
from sim.scenario.runner import run_scenario

HOSTILE = Path(__file__).resolve().parent / "hostile"
EXPECTED: dict[str, dict[str, Any]] = json.loads((HOSTILE / "expected.json").read_text())
#: Cases that would hang the test process today: they run in a child with a timeout.
HANGS = {"billion_laughs.yaml"}
CHILD_TIMEOUT_S = 3


def cases() -> list[Any]:
    out = []
    for name, expected in sorted(EXPECTED.items()):
        if name in HANGS:
            continue  # test_an_alias_bomb_is_refused_quickly, in a child process
        marks = []
        if "bug" in expected:
            marks.append(pytest.mark.xfail(strict=True, reason=f"bug: {expected['bug']}"))
        out.append(pytest.param(name, expected, marks=marks, id=name))
    return out


def refusal_in_child(path: Path) -> dict[str, Any]:
    """Load in a separate process (killed after a timeout); what the loader said."""
    code = (
        "import json, sys\n"
        "from sim.scenario.parse import ScenarioError, load_scenario\n"
        "try:\n"
        "    load_scenario(sys.argv[1])\n"
        "    print(json.dumps({'loaded': True}))\n"
        "except ScenarioError as e:\n"
        "    print(json.dumps({'line': e.line, 'column': e.column, 'message': e.message}))\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, str(path)],
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(f"loading {path.name} did not finish in {CHILD_TIMEOUT_S}s") from None
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_corpus_matches_its_generator(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_corpus", HOSTILE / "make_corpus.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.HERE = tmp_path
    module.write()
    generated = sorted(p.name for p in tmp_path.iterdir())
    committed = sorted(p.name for p in HOSTILE.iterdir() if p.name != "make_corpus.py")
    committed = [n for n in committed if not n.startswith("__")]
    assert generated == committed
    for name in generated:
        assert (tmp_path / name).read_bytes() == (HOSTILE / name).read_bytes(), name
    assert len(EXPECTED) >= 60


@pytest.mark.parametrize(("name", "expected"), cases())
def test_malformed_file_is_refused_with_its_position(name: str, expected: dict[str, Any]) -> None:
    path = HOSTILE / name
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    line, column, message = caught.value.line, caught.value.column, caught.value.message
    lines = str(caught.value).splitlines()
    assert lines[0] == f"{path}:{line}:{column}: {message}"
    assert all(line.startswith(f"{path}:") for line in lines)  # every problem, one line each
    assert (line, column) == (expected["line"], expected["column"]), message
    assert expected["contains"] in message
    assert "\n" not in message, "one line per problem"
    assert "Traceback" not in message


@pytest.mark.parametrize("command", ["run", "explore"])
def test_cli_refuses_every_malformed_file_with_exit_2(command: str, tmp_path: Path) -> None:
    extra = ["--out", str(tmp_path)] if command == "explore" else []
    for name, expected in sorted(EXPECTED.items()):
        if name in HANGS:
            continue
        path = HOSTILE / name
        result = CliRunner().invoke(cli, [command, str(path), *extra])
        assert result.exit_code == 2, (name, result.output, result.exception)
        assert isinstance(result.exception, SystemExit), (name, result.exception)
        lines = result.stderr.strip().splitlines()
        if "bug" not in expected:
            with pytest.raises(ScenarioError) as caught:
                load_scenario(path)
            assert len(lines) == len(caught.value.errors), (name, lines)  # one line each
            assert all(line.startswith(f"turnsim: {path}:") for line in lines), (name, lines)
        assert lines[0].startswith(f"turnsim: {path}:{expected['line']}:"), (name, lines)
        assert "Traceback" not in result.output


def test_a_real_process_exits_2_without_a_traceback() -> None:
    paths = [str(HOSTILE / n) for n in ("binary_random.bin", "deep_lists.yaml")]
    for path in paths:
        done = subprocess.run(
            [sys.executable, "-m", "sim", "run", path], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2
        assert done.stderr.startswith(f"turnsim: {path}:1:")
        assert "Traceback" not in done.stderr


def test_an_alias_bomb_is_refused_quickly() -> None:
    """Nine levels of ten aliases: a loader that expands them never finishes."""
    expected = EXPECTED["billion_laughs.yaml"]
    said = refusal_in_child(HOSTILE / "billion_laughs.yaml")
    assert (said.get("line"), said.get("column")) == (expected["line"], expected["column"])
    assert expected["contains"] in said["message"]


def test_an_oversized_file_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"name: x\n" + b"# padding\n" * 900_000)
    with pytest.raises(ScenarioError, match="at most"):
        load_scenario(big)
    long_prompt = tmp_path / "long_prompt.yaml"
    long_prompt.write_text(
        "name: x\nprofiles: {p: {runtime_key: r}}\nconversations: {c1: {profile: p}}\n"
        f"steps:\n  - send: {{conv: c1, prompt: {'y' * 200_000}}}\n"
    )
    with pytest.raises(ScenarioError, match="too long"):
        load_scenario(long_prompt)


# -- fuzzing the loader -----------------------------------------------------------------

VALID: dict[str, Any] = {
    "name": "fuzzed",
    "seed": 3,
    "retry": {"attempts": 2, "backoff_ms": 1},
    "profiles": {
        "inventory": {"runtime_key": "inventory@v1", "latency_ms": 10, "jitter_ms": 3},
        "planner": {"runtime_key": "planner@v1", "latency_ms": 20, "tool_rounds": 1},
    },
    "conversations": {
        "c1": {"profile": "inventory", "session": "s1"},
        "c2": {"profile": "planner"},
    },
    "steps": [
        {"send": {"conv": "c1", "turn": "t1", "prompt": "hi", "wait": False}},
        {"switch_profile": {"conv": "c1", "profile": "planner", "at": "random", "within_ms": 30}},
        {"inject_fault": {"conv": "c2", "kind": "transient", "times": 1}},
        {"send": {"conv": "c2", "turn": "u1", "prompt": "yo"}},
        {"wait_idle": "all"},
        {"resave": {"conv": "c1", "turn": "t1", "from": "pointer", "refusal_expected": True}},
        {"expect_turn": {"conv": "c1", "turn": "t1", "runtime_key": "inventory@v1"}},
        {"expect_turn_count": {"conv": "c2", "count": 1}},
        {"cancel": "c1"},
        {"crash": "c2"},
        {"sleep": 5},
    ],
}

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["c1", "c2", "t1", "u1", "planner", "inventory", "random", "all", ""])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def must_load_or_refuse(text: str, path: str = "fuzz.yaml") -> Scenario | None:
    try:
        return parse_scenario(text, path)
    except ScenarioError as exc:
        assert exc.path == path
        # a line an editor shows: only "\n" ends one (YAML also breaks at \r, \x85, \u2028...)
        assert 1 <= exc.line <= text.count("\n") + 1, (exc.line, str(exc))
        assert exc.column >= 1
        assert exc.message.strip()
        return None


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths(v, (*prefix, i))
    return out


def mutate(doc: Any, path: tuple[Any, ...], how: str, value: Any) -> Any:
    doc = copy.deepcopy(doc)
    if not path:
        return value
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if how == "replace":
        parent[last] = value
    elif how == "delete":
        del parent[last]
    elif how == "add" and isinstance(parent[last], dict):
        parent[last][str(value)[:10] or "x"] = value
    elif how == "add" and isinstance(parent[last], list):
        parent[last].append(value)
    return doc


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
# once flaky: YAML counted these as line breaks and said line 3 of a text with no "\n"
@example("\r\r[")
@example("a: 1\x85b: 2\u2028c: [")
@example("\u2029\u2029: x")
@example("name: [")  # the end of a text without a final newline is on its last line
def test_fuzz_random_text(text: str) -> None:
    must_load_or_refuse(text)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("bytes") / "fuzz.yaml"
    path.write_bytes(data)
    try:
        load_scenario(path)
    except ScenarioError as exc:
        assert exc.path == str(path) and exc.line >= 1 and exc.column >= 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_fuzz_random_yaml_documents(doc: Any) -> None:
    must_load_or_refuse(yaml.safe_dump(doc))


@st.composite
def mutated(draw: st.DrawFn) -> str:
    doc = VALID
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths(doc)))
        how = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if how == "delete" and not path:
            how = "replace"
        doc = mutate(doc, path, how, draw(values))
    return yaml.safe_dump(doc, sort_keys=draw(st.booleans()))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_fuzz_mutated_scenarios_load_or_are_refused(text: str) -> None:
    must_load_or_refuse(text)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(), st.integers(0, 2**32))
def test_fuzz_whatever_loads_also_runs(text: str, seed: int) -> None:
    scenario = must_load_or_refuse(text)
    if scenario is None or any(p.latency_ms > 10_000 for p in scenario.profiles):
        return
    result = anyio.run(lambda: run_scenario(scenario, seed=seed))  # no exception escapes
    assert result.turns >= 0
    json.dumps(result.to_json())


@pytest.mark.slow
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated() | values.map(yaml.safe_dump) | st.text(max_size=2000))
def test_fuzz_the_loader_long(text: str) -> None:
    must_load_or_refuse(text)
