"""The log is deterministic and documented: the same scenarios and seeds give the same
bytes (on either backend), no event carries wall-clock time, every catalogue event shows up
in the shipped suite's logs, and docs/logs.md lists exactly the fields events carry."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from sim.cli.main import cli
from sim.events import CATALOGUE
from sim.logs.setup import configure_quiet

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"
DOCS = ROOT / "docs" / "logs.md"

#: Catalogue events no scenario file can produce, and why. The test below fails as soon as
#: one of them shows up, so this list cannot go stale.
UNREACHABLE = {
    "profile.switch_refused": (
        "scenario files are validated against their profiles, so no step can switch to an "
        "unknown one"
    ),
}
#: The suite runs whose logs count as "the shipped suite's logs": the default build, and
#: the bug variants that make the events only a bug can produce (a swallowed save error, an
#: ignored history error, a violation, a failed expectation).
SUITE_RUNS = {
    "default": (),
    "swallow": ("--variant", "swallow-snapshot-errors+ignore-history-error"),
}
_TYPES = {"string": str, "int": int, "bool": bool, "list": list, "null": type(None)}


def run_log(path: Path, target: Path, *args: str) -> bytes:
    result = CliRunner().invoke(cli, ["run", str(target), "--log-file", str(path), *args])
    configure_quiet()  # `turnsim run --log-file` leaves structlog on its (closed) file
    assert result.exit_code in (0, 1), result.output
    return path.read_bytes()


def events(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in raw.splitlines()]


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    directory = tmp_path_factory.mktemp("suite")
    logs = {
        name: run_log(directory / f"{name}.jsonl", SCENARIOS, *args)
        for name, args in SUITE_RUNS.items()
    }
    logs["again"] = run_log(directory / "again.jsonl", SCENARIOS)
    logs["trio"] = run_log(directory / "trio.jsonl", SCENARIOS, "--backend", "trio")
    return logs


def test_same_scenarios_and_seeds_give_identical_bytes(suite: dict[str, bytes]) -> None:
    assert suite["default"].count(b"\n") > 500
    assert suite["again"] == suite["default"]


def test_the_backend_does_not_change_a_byte(suite: dict[str, bytes]) -> None:
    assert suite["trio"] == suite["default"]


def test_the_seed_changes_the_run(tmp_path: Path) -> None:
    scenario = SCENARIOS / "concurrent_conversations.yaml"
    seven = run_log(tmp_path / "a.jsonl", scenario, "--seed", "7")
    eight = run_log(tmp_path / "b.jsonl", scenario, "--seed", "8")
    assert seven == run_log(tmp_path / "c.jsonl", scenario, "--seed", "7")

    def without_seed(raw: bytes) -> list[dict[str, Any]]:
        return [{k: v for k, v in e.items() if k != "seed"} for e in events(raw)]

    assert without_seed(seven) != without_seed(eight)  # ids at least come from the seed


_WALL = re.compile(r"(^|_)(time|timestamp|date|wall|clock|elapsed|duration|s|ns|us)(_|$)")
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def test_no_event_carries_wall_clock_time(suite: dict[str, bytes]) -> None:
    for name in SUITE_RUNS:
        for e in events(suite[name]):
            assert not [k for k in e if _WALL.search(k)], e
            assert not [v for v in e.values() if isinstance(v, str) and _ISO.search(v)], e
            assert isinstance(e["t_ms"], int) and e["t_ms"] >= 0


def test_every_catalogue_event_appears_in_the_shipped_suite(suite: dict[str, bytes]) -> None:
    seen = {e["event"] for name in SUITE_RUNS for e in events(suite[name])}
    assert set(UNREACHABLE) <= set(CATALOGUE)
    missing = sorted(set(CATALOGUE) - seen - set(UNREACHABLE))
    assert missing == [], f"no shipped scenario produces {missing}; add one under scenarios/"
    assert not set(UNREACHABLE) & seen, "now reachable: remove it from UNREACHABLE"
    assert seen <= set(CATALOGUE), sorted(seen - set(CATALOGUE))


# -- docs/logs.md -------------------------------------------------------------------------


def documented() -> dict[str, dict[str, set[type]]]:
    """Section name (an event, or "Every event") -> field -> the types it may have."""
    out: dict[str, dict[str, set[type]]] = {}
    section = None
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        heading = re.fullmatch(r"### (?:`([a-z_.]+)`|(Every event))", line)
        if heading:
            section = heading.group(1) or heading.group(2)
            out[section] = {}
            continue
        if line.startswith("## "):
            section = None
        row = re.match(r"\| `([a-z_]+)` \| ([a-z ]+) \|", line)
        if section is not None and row:
            out[section][row.group(1)] = {_TYPES[t] for t in row.group(2).split(" or ")}
    return out


def _fields(raw: bytes) -> Iterator[tuple[str, str, type]]:
    for e in events(raw):
        for key, value in e.items():
            yield e["event"], key, type(value)


def test_docs_list_the_catalogue_and_every_field_with_its_type(suite: dict[str, bytes]) -> None:
    docs = documented()
    common = docs.pop("Every event")
    assert list(docs) == list(CATALOGUE)  # every event, in catalogue order
    seen: dict[str, set[str]] = {name: set() for name in CATALOGUE}
    for name in SUITE_RUNS:
        for event, key, kind in _fields(suite[name]):
            allowed = common.get(key) or docs[event].get(key)
            assert allowed is not None, f"{event}: field {key!r} is not in docs/logs.md"
            assert kind in allowed, f"{event}.{key}: {kind.__name__} is not documented"
            seen[event].add(key)
    for event in set(CATALOGUE) - set(UNREACHABLE):
        stale = set(docs[event]) - seen[event]
        if event == "fault.injected":
            stale -= {"pipeline", "phase"}  # only some fault points carry them
        if event == "turn.persisted":
            stale -= {"open_tool_calls"}  # only the bug variant unpaired-tool-call writes it
        assert not stale, f"{event}: docs/logs.md lists {sorted(stale)} but no event has them"
