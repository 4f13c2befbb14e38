"""sim.logs.read at the library level: the streaming reader, the filter, the timeline model
and the summary, on logs written by real runs."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.cli.main import cli
from sim.events import CATALOGUE
from sim.logs.read import (
    MAX_LINE_BYTES,
    LogFilter,
    Malformed,
    Selector,
    TimelineBuilder,
    build_timelines,
    iter_log,
    parse_line,
    read_events,
    read_logs,
    summarize,
)
from sim.logs.setup import configure_quiet

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"


def run_log(tmp_path: Path, scenario: str, *args: str, name: str = "run") -> Path:
    log = tmp_path / f"{name}.jsonl"
    result = CliRunner().invoke(
        cli, ["run", str(SCENARIOS / scenario), "--log-file", str(log), *args]
    )
    assert result.exit_code in (0, 1), result.output
    return log


@pytest.fixture(scope="module")
def late_log(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    path = run_log(
        tmp_path_factory.mktemp("late"),
        "inflight_switch.yaml",
        "--variant",
        "late-snapshot-runtime",
    )
    configure_quiet()
    return read_events(str(path))


def _seqs(events: list[dict[str, Any]], spec: LogFilter) -> list[int]:
    select = Selector(spec)
    return [e["seq"] for e in events if select(e)]


def _started(events: list[dict[str, Any]], label: str) -> dict[str, Any]:
    return next(e for e in events if e["event"] == "inference.started" and e["turn"] == label)


# -- reading --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json\n", "not a JSON object (Expecting value at column 1)"),
        (b"[1, 2]\n", "not a JSON object (got an array)"),
        (b'"text"\n', "not a JSON object (got a string)"),
        (b"42\n", "not a JSON object (got a number)"),
        (b"null\n", "not a JSON object (got null)"),
        (b'{"event": 3}\n', 'not a log event (no "event" name)'),
        (b'{"seq": 1}\n', 'not a log event (no "event" name)'),
        (b'{"event": "x", "v": "\xff"}\n', "not a JSON object (invalid UTF-8)"),
        (b'{"event": "x"', "not a JSON object (Expecting ',' delimiter at column 14)"),
        (b"[" * 100_000 + b"\n", "not a JSON object (nested too deeply)"),
    ],
)
def test_parse_line_names_what_is_wrong(raw: bytes, reason: str) -> None:
    assert parse_line(raw) == reason


def test_parse_line_returns_the_event() -> None:
    assert parse_line(b'{"event":"a.b","seq":1}\r\n') == {"event": "a.b", "seq": 1}


def test_reader_reports_bad_lines_by_number_and_keeps_going() -> None:
    data = b'{"event":"a"}\n\n   \nnope\n{"event":"b"}\n[1]\n{"event":"c"}'
    bad: list[Malformed] = []
    lines = list(iter_log(io.BytesIO(data), "x.jsonl", bad.append))
    assert [(line.number, line.event["event"]) for line in lines] == [(1, "a"), (5, "b"), (7, "c")]
    assert [str(b) for b in bad] == [
        "x.jsonl:4: not a JSON object (Expecting value at column 1)",
        "x.jsonl:6: not a JSON object (got an array)",
    ]
    assert lines[2].raw == b'{"event":"c"}'  # the last line, without its newline, unchanged


def test_an_oversized_line_is_skipped_without_losing_the_next() -> None:
    huge = b'{"event":"x","pad":"' + b"a" * MAX_LINE_BYTES + b'"}\n'
    bad: list[Malformed] = []
    lines = list(iter_log(io.BytesIO(huge + b'{"event":"after"}\n'), "big", bad.append))
    assert [line.event["event"] for line in lines] == ["after"]
    assert lines[0].number == 2
    assert [b.line for b in bad] == [1]
    assert "longer than" in bad[0].reason


def test_gzip_and_plain_files_read_the_same(tmp_path: Path) -> None:
    plain = run_log(tmp_path, "inventory_to_planner.yaml")
    packed = tmp_path / "run.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert read_events(str(packed)) == read_events(str(plain))
    assert len(read_events(str(plain))) > 20


def test_read_logs_reads_several_files_and_stdin_in_order(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_bytes(b'{"event":"one"}\n')
    b.write_bytes(b'{"event":"three"}\n')
    stdin = io.BufferedReader(io.BytesIO(b'{"event":"two"}\n'))  # type: ignore[arg-type]
    names = [line.event["event"] for line in read_logs([str(a), "-", str(b)], print, stdin=stdin)]
    assert names == ["one", "two", "three"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=30))
def test_any_bytes_are_read_or_reported_never_raised(chunks: list[bytes]) -> None:
    lines = [*chunks, b'{"event":"end"}']
    bad: list[Malformed] = []
    got = list(iter_log(io.BytesIO(b"\n".join(lines)), "f", bad.append))
    numbered = [(i, raw) for i, raw in enumerate(lines, start=1) if raw.strip()]
    assert sorted([line.number for line in got] + [b.line for b in bad]) == [n for n, _ in numbered]
    assert got[-1].event == {"event": "end"} and got[-1].number == len(lines)
    for line in got:
        assert lines[line.number - 1] == line.raw.rstrip(b"\n")


# -- the filter ---------------------------------------------------------------------------


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


# -- the timeline model -------------------------------------------------------------------


def test_timeline_names_the_turn_that_got_the_wrong_runtime(
    late_log: list[dict[str, Any]],
) -> None:
    (run,) = build_timelines(late_log)
    assert (run.scenario, run.seed, run.variants, run.result) == (
        "inflight-switch",
        7,
        ("late-snapshot-runtime",),
        "fail",
    )
    findings = run.findings()
    assert [(c.conv_id, t.label) for c, t in findings] == [("inflight-switch.c1", "t2")]
    turn = findings[0][1]
    assert turn.runtime_key == "planner@v1" and turn.started_ms == 100
    assert [(t, phase, carried) for _, t, phase, carried, _, _ in turn.wrong] == [
        (300, "post_inference", "inventory@v1"),
        (350, "post_tools", "inventory@v1"),
        (550, "final", "inventory@v1"),
    ]
    switch = next(e for e in late_log if e["event"] == "profile.switched" and e["t_ms"] == 150)
    assert turn.raced == [(switch["seq"], 150, "planner@v1", "inventory@v1")]
    assert dict(turn.violations) == {"runtime-bound-at-start": 3, "nothing-lost": 3}
    # each violation sits on the save it is about (its at_seq)
    conv = run.conversations["inflight-switch.c1"]
    placed = {
        e.seq: sorted(v.invariant for v in e.violations) for e in conv.entries if e.violations
    }
    failed = [e["seq"] for e in late_log if e["event"] == "snapshot.save_failed"]
    assert placed == {s: ["nothing-lost", "runtime-bound-at-start"] for s in failed}
    # the in-flight switch is drawn inside t2's block
    raced_entry = next(e for e in conv.entries if e.seq == switch["seq"])
    assert raced_entry.turn is turn and raced_entry.inside and raced_entry.severity == "warn"


def test_timeline_of_a_correct_run_has_no_findings(tmp_path: Path) -> None:
    (run,) = build_timelines(read_events(str(run_log(tmp_path, "inflight_switch.yaml"))))
    assert run.result == "pass"
    assert run.findings() == []
    conv = run.conversations["inflight-switch.c1"]
    assert [t.label for t in conv.turns.values()] == ["t1", "t2", "t3"]
    assert all(e.severity != "bad" for e in conv.entries)
    (t2,) = [t for t in conv.turns.values() if t.label == "t2"]
    assert t2.stored == dict.fromkeys(
        ("pre_inference", "post_inference", "post_tools", "final"), "planner@v1"
    )
    assert len(t2.raced) == 1  # the switch still raced; the turn kept its runtime


def test_final_state_violations_go_to_the_stored_save_they_describe(tmp_path: Path) -> None:
    log = run_log(
        tmp_path, "inflight_switch.yaml", "--variant", "late-snapshot-runtime+upsert-overwrite"
    )
    (run,) = build_timelines(read_events(str(log)))
    conv = run.conversations["inflight-switch.c1"]
    (t2,) = [t for t in conv.turns.values() if t.label == "t2"]
    assert {w[4] for w in t2.wrong} == {"inventory@v1"}  # stored, not only carried
    stored_wrong = [
        e
        for e in conv.entries
        if e.turn is t2 and e.event == "snapshot.saved" and e.data["runtime_key"] != "planner@v1"
    ]
    assert len(stored_wrong) == 3
    for entry in stored_wrong:
        kinds = sorted(v.invariant for v in entry.violations)
        assert kinds == ["never-rewritten", "runtime-bound-at-start", "runtime-bound-at-start"]
        assert sum(v.at_seq == 0 for v in entry.violations) == 1


def test_turns_without_ids_stay_apart(tmp_path: Path) -> None:
    log = run_log(tmp_path, "inflight_switch.yaml", "--variant", "default-turn-id")
    (run,) = build_timelines(read_events(str(log)))
    turns = list(run.conversations["inflight-switch.c1"].turns.values())
    assert [(t.label, t.no_turn_id) for t in turns] == [("t1", True), ("t2", True), ("t3", True)]
    assert len({t.inference_id for t in turns}) == 3
    assert all("no turn id" in t.name for t in turns)


def test_each_run_is_handed_over_when_it_finishes(tmp_path: Path) -> None:
    a = read_events(str(run_log(tmp_path, "inventory_to_planner.yaml", name="a")))
    configure_quiet()
    b = read_events(str(run_log(tmp_path, "tool_rounds.yaml", name="b")))
    builder = TimelineBuilder()
    handed = [len(builder.feed(e)) for e in a]
    assert handed == [0] * (len(a) - 1) + [1]  # at scenario.finished, not before
    assert builder.run.empty and builder.close() == []
    done = [run for e in b[:-1] for run in builder.feed(e)]
    assert done == []
    (unfinished,) = builder.close()  # a log cut short still shows what it has
    assert unfinished.scenario == "tool-rounds" and unfinished.result == ""


def test_filtered_out_run_boundaries_still_split_runs(tmp_path: Path) -> None:
    a = read_events(str(run_log(tmp_path, "inventory_to_planner.yaml", name="a")))
    configure_quiet()
    b = read_events(str(run_log(tmp_path, "tool_rounds.yaml", name="b")))
    select = Selector(LogFilter(convs=("c1",), events=("inference.*",)))
    builder = TimelineBuilder()
    runs = [run for e in a + b for run in builder.feed(e, select(e))] + builder.close()
    assert [(r.scenario, r.result, list(r.conversations)) for r in runs] == [
        ("inventory-to-planner", "pass", ["inventory-to-planner.c1"]),
        ("tool-rounds", "pass", ["tool-rounds.c1"]),
    ]


# -- the summary --------------------------------------------------------------------------


def test_summary_agrees_with_the_runner_report(tmp_path: Path) -> None:
    log = tmp_path / "suite.jsonl"
    args = ["run", str(SCENARIOS), "--variant", "late-snapshot-runtime", "--json"]
    result = CliRunner().invoke(cli, [*args, "--log-file", str(log)])
    assert result.exit_code == 1
    report = json.loads(result.output)
    summary = summarize(read_events(str(log)), CATALOGUE)
    invariants: dict[str, int] = {}
    for r in report["scenarios"]:
        for f in r["failures"]:
            if f["kind"] == "invariant":
                invariants[f["name"]] = invariants.get(f["name"], 0) + 1
    assert dict(summary.violations_by_invariant) == invariants
    assert summary.violation_count > 0
    assert summary.runs == len(list(SCENARIOS.glob("*.yaml")))
    assert summary.failed_runs == report["summary"]["failed"] > 0
    assert sum(c.turns for c in summary.runtimes.values()) == report["summary"]["turns"]
    assert sum(c.switches for c in summary.conversations.values()) == report["summary"]["switches"]
    assert summary.unknown_events == {}
    odd = summarize([{"event": "made.up"}, {"event": "scenario.started"}], CATALOGUE)
    assert dict(odd.unknown_events) == {"made.up": 1}
