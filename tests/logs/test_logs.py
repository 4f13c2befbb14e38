"""``turnsim logs``: views, filters, errors and streaming, through the real command line
(in-process with click's CliRunner; two tests run it as a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sim.cli.main import cli
from sim.events import CATALOGUE
from sim.logs.read import read_events, read_logs
from sim.logs.render import event_line, timeline_lines
from sim.logs.render import plain as plain_text
from sim.logs.select import LogFilter, Selector
from sim.logs.setup import configure_quiet
from sim.logs.summary import SummaryBuilder
from sim.logs.timeline import TimelineBuilder

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"


def turnsim(*args: str, input: bytes | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input)


def run_log(directory: Path, scenario: str, *args: str, name: str = "run") -> Path:
    log = directory / f"{name}.jsonl"
    result = turnsim("run", str(SCENARIOS / scenario), "--log-file", str(log), *args)
    assert result.exit_code in (0, 1), result.output
    configure_quiet()
    return log


@pytest.fixture(scope="module")
def late(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The issue's example: a switch while t2 is in flight, late-bound snapshot runtime."""
    return run_log(
        tmp_path_factory.mktemp("late"),
        "inflight_switch.yaml",
        "--variant",
        "late-snapshot-runtime",
    )


def write_big_log(path: Path, lines: int, *templates: Path) -> int:
    """A log of about ``lines`` lines: the templates again and again, each copy's scenarios
    and conversations renamed ``r<copy>-…`` so that every copy is a run of its own."""
    template = b"".join(t.read_bytes() for t in templates)
    per_copy = template.count(b"\n")
    copies = -(-lines // per_copy)
    with path.open("wb") as out:
        for i in range(copies):
            prefix = b"r%d-" % i
            out.write(
                template.replace(b'"scenario":"', b'"scenario":"' + prefix).replace(
                    b'"conv_id":"', b'"conv_id":"' + prefix
                )
            )
    return copies


# -- the timeline -------------------------------------------------------------------------


def test_timeline_shows_which_turn_got_the_wrong_runtime_and_when_the_switch_was(
    late: Path,
) -> None:
    result = turnsim("logs", str(late), "--timeline")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("== inflight-switch · seed 7 · variant late-snapshot-runtime")
    assert lines[0].endswith("FAIL (7 failures)")
    # at a glance: the finding right under the header names the turn, both runtimes, the switch
    finding = lines[1]
    assert finding.lstrip().startswith("✗ turn t2 ")
    for part in (
        "bound planner@v1 at t=100ms",
        "3 saves carried inventory@v1",
        "switched planner@v1 -> inventory@v1 at t=150ms while it ran",
    ):
        assert part in finding
    # the switch is drawn inside t2's block, at its time
    (switch,) = [line for line in lines if "IN FLIGHT" in line]
    assert switch.split()[0] == "t=150ms"
    assert "switch planner@v1 -> inventory@v1" in switch and "turn t2" in switch
    header = next(line for line in lines if " turn t2 " in line and "  inference " in line)
    assert "✗ WRONG RUNTIME: saves carried inventory@v1" in header
    # each violation is on the line right under the save it happened at
    at = next(i for i, line in enumerate(lines) if "post_inference  REFUSED" in line)
    assert lines[at].split()[0] == "t=300ms" and "✗ bound planner@v1" in lines[at]
    assert "✗ runtime-bound-at-start: expected planner@v1, actual inventory@v1" in lines[at + 1]
    assert "✗ nothing-lost" in lines[at + 2]
    assert lines.index(switch) < at  # chronological


def test_the_docs_show_what_the_timeline_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # the docs run it from the repository, with a relative path
    log = tmp_path / "run.jsonl"
    scenario = "scenarios/inflight_switch.yaml"
    turnsim("run", scenario, "--variant", "late-snapshot-runtime", "--log-file", str(log))
    configure_quiet()
    docs = (ROOT / "docs" / "logs.md").read_text(encoding="utf-8")
    shown = docs.split("$ turnsim logs run.jsonl --timeline\n")[1].split("  ...\n```")[0]
    assert shown.count("\n") > 25
    assert turnsim("logs", str(log), "--timeline").output.startswith(shown)


def test_timeline_of_a_correct_run_flags_nothing(tmp_path: Path) -> None:
    log = run_log(tmp_path, "inflight_switch.yaml")
    result = turnsim("logs", str(log), "--timeline")
    assert result.exit_code == 0
    assert "✗" not in result.output and "PASS" in result.output.splitlines()[0]
    assert "IN FLIGHT: turn t2" in result.output  # the race happened; the turn kept its runtime


def test_timeline_json_is_the_model(late: Path) -> None:
    result = turnsim("logs", str(late), "--timeline", "--json")
    assert result.exit_code == 0
    (run,) = [json.loads(line) for line in result.output.splitlines()]
    (finding,) = run["findings"]
    assert (finding["conv_id"], finding["label"], finding["runtime_key"]) == (
        "inflight-switch.c1",
        "t2",
        "planner@v1",
    )
    assert [w["phase"] for w in finding["wrong_runtime"]] == [
        "post_inference",
        "post_tools",
        "final",
    ]
    assert finding["raced_switches"][0]["t_ms"] == 150


def test_filters_narrow_the_timeline(late: Path) -> None:
    only_t1 = turnsim("logs", str(late), "--timeline", "--turn", "t1").output
    assert "turn t1 " in only_t1 and "turn t2 " not in only_t1 and "✗ turn" not in only_t1
    nothing = turnsim("logs", str(late), "--timeline", "--conv", "nope")
    assert nothing.exit_code == 0 and nothing.output == ""


def test_colour_only_when_asked_or_on_a_terminal(late: Path) -> None:
    assert "\x1b[" in turnsim("logs", str(late), "--timeline", "--color", "always").output
    assert "\x1b[" not in turnsim("logs", str(late), "--timeline").output  # not a terminal


# -- lines, --json, filters -----------------------------------------------------------------


def test_json_passes_the_selected_lines_through_unchanged(late: Path) -> None:
    raw = late.read_bytes()
    assert turnsim("logs", str(late), "--json").stdout_bytes == raw
    picked = turnsim("logs", str(late), "--json", "--event", "snapshot.save_*", "--since", "300")
    expected = [
        line
        for line in raw.splitlines(keepends=True)
        if json.loads(line)["event"].startswith("snapshot.save_")
        and json.loads(line)["t_ms"] >= 300
    ]
    assert picked.stdout_bytes.splitlines(keepends=True) == expected
    assert len(expected) == 3


def test_json_keeps_line_endings_and_adds_a_missing_last_newline(tmp_path: Path) -> None:
    crlf = tmp_path / "crlf.jsonl"
    crlf.write_bytes(b'{"event":"a.b","seq":1} \r\n{"event":"c.d","seq":2}')
    result = turnsim("logs", str(crlf), "--json")
    assert result.stdout_bytes == b'{"event":"a.b","seq":1} \r\n{"event":"c.d","seq":2}\n'


def test_stdin_reads_like_a_file(late: Path) -> None:
    from_file = turnsim("logs", str(late), "--summary", "--json")
    from_stdin = turnsim("logs", "-", "--summary", "--json", input=late.read_bytes())
    assert from_stdin.exit_code == 0
    assert json.loads(from_stdin.output) == json.loads(from_file.output)


def test_line_view_shows_context_first(late: Path) -> None:
    result = turnsim("logs", str(late), "--event", "profile.switched", "--until", "150")
    lines = result.output.splitlines()
    assert lines[0] == "== inflight-switch · seed 7"
    assert len(lines) == 3
    seq, t, name, *fields = lines[2].split()
    assert (seq, t, name) == ("19", "t=150ms", "profile.switched")
    assert fields[:3] == ["conv_id=inflight-switch.c1", "session_id=s1", "runtime_key=inventory@v1"]
    assert "inflight_turn=t2" in fields
    assert any(f.startswith("inflight_turn_id=") and len(f) == 25 for f in fields)  # short id


def test_an_event_glob_that_matches_no_catalogue_name_is_warned_about(late: Path) -> None:
    result = turnsim("logs", str(late), "--event", "profile")
    assert result.exit_code == 0 and result.stdout == ""
    assert "--event 'profile' matches no catalogue event" in result.stderr


# -- summary --------------------------------------------------------------------------------


def test_summary_puts_violations_first(late: Path) -> None:
    result = turnsim("logs", str(late), "--summary")
    assert result.exit_code == 0
    out = result.output
    assert out.splitlines()[0].startswith("✗ 6 invariant violations")
    assert "runtime-bound-at-start 3" in out.splitlines()[0]
    assert out.index("invariant violations") < out.index("events") < out.index("runtimes")
    assert out.index("runtimes") < out.index("conversations")
    assert "1 failed expectation" in out


def test_summary_json_counts(late: Path) -> None:
    summary = json.loads(turnsim("logs", str(late), "--summary", "--json").output)
    events = read_events(str(late))
    assert summary["events"] == summary["lines"] == len(events)
    assert summary["violations"]["by_invariant"] == {
        "runtime-bound-at-start": 3,
        "nothing-lost": 3,
    }
    assert summary["runtimes"]["planner@v1"] == {
        "turns": 1,
        "saves": 2,
        "failed_saves": 0,
        "switched_to": 1,
    }
    assert summary["runtimes"]["inventory@v1"]["failed_saves"] == 3
    conv = summary["conversations"]["inflight-switch.c1"]
    assert (conv["turns"], conv["switches"], conv["inflight_switches"]) == (3, 2, 1)


# -- bad input ------------------------------------------------------------------------------


def test_malformed_lines_are_reported_counted_and_skipped(tmp_path: Path, late: Path) -> None:
    good = late.read_bytes().splitlines(keepends=True)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(
        good[0] + b"garbage\n" + good[1] + b"[1, 2]\n" + b'{"no": "event"}\n' + b"".join(good[2:])
    )
    result = turnsim("logs", str(bad), "--json")
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        f"{bad}:2: not a JSON object (Expecting value at column 1)",
        f"{bad}:4: not a JSON object (got an array)",
        f'{bad}:5: not a log event (no "event" name)',
        "turnsim logs: 3 malformed lines skipped",
    ]
    assert result.stdout_bytes == late.read_bytes()  # everything else, unchanged
    timeline = turnsim("logs", str(bad), "--timeline")
    assert timeline.exit_code == 0 and "✗ turn t2" in timeline.stdout


def test_a_console_log_gets_a_hint(tmp_path: Path) -> None:
    console = tmp_path / "console.log"
    console.write_text("2024-01-01 [info] scenario.started seq=1\n" * 150)
    result = turnsim("logs", str(console), "--summary")
    assert result.exit_code == 0
    errors = result.stderr.splitlines()
    assert len(errors) == 101  # the first 100, then the count
    assert errors[-1] == (
        "turnsim logs: 150 malformed lines skipped (first 100 shown); no JSON event found: "
        "was it written with --log-format console?"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.jsonl"], "turnsim: missing.jsonl: no such file"),
        ([".", "--timeline"], "turnsim: .: is a directory, not a log file"),
        (["-", "-"], "turnsim: stdin ('-') can be read only once"),
        (
            ["-", "--timeline", "--summary"],
            "turnsim: choose one of --timeline, --summary and --plot",
        ),
        (
            ["-", "--since", "500", "--until", "100"],
            "turnsim: --since 500 is after --until 100; nothing could match",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = turnsim("logs", *args, input=b"")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [message]
    assert result.stdout == ""


# -- large files ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory, late: Path) -> tuple[Path, int]:
    path = tmp_path_factory.mktemp("big") / "big.jsonl"
    return path, write_big_log(path, 200_000, late)


def test_a_200k_line_log_is_read_quickly(big: tuple[Path, int], late: Path) -> None:
    path, copies = big
    assert path.read_bytes().count(b"\n") >= 200_000
    started = time.perf_counter()
    summary = turnsim("logs", str(path), "--summary", "--json")
    elapsed = time.perf_counter() - started
    assert summary.exit_code == 0
    counts = json.loads(summary.output)
    assert counts["events"] == copies * len(read_events(str(late)))
    assert counts["violations"]["count"] == copies * 6
    assert counts["runs"]["count"] == counts["runs"]["failed"] == copies
    assert len(counts["conversations"]) == copies
    assert counts["conversations"]["r9-inflight-switch.c1"]["inflight_switches"] == 1
    assert elapsed < 20  # about 1.2 s here; a generous bound for slow machines


def test_views_hold_counters_not_the_file(tmp_path: Path, big: tuple[Path, int]) -> None:
    """The code paths of the three views, output thrown away, on a log and on one three
    times as long: under tracemalloc, what they hold must not grow with the file."""
    small, large = tmp_path / "small.jsonl", tmp_path / "large.jsonl"
    with big[0].open("rb") as source, small.open("wb") as a, large.open("wb") as b:
        for n in range(4_500):
            line = source.readline()
            if n < 1_500:
                a.write(line)
            b.write(line)

    def summary(path: Path) -> None:
        counter = SummaryBuilder(CATALOGUE)
        for line in read_logs([str(path)], pytest.fail):
            counter.add(line.event)
        assert counter.summary.events > 1_000

    def timeline(path: Path) -> None:
        builder, shown = TimelineBuilder(), 0
        for line in read_logs([str(path)], pytest.fail):
            for run in builder.feed(line.event, True):
                shown += sum(1 for segments in timeline_lines(run) if plain_text(segments))
        assert shown > 500

    def plain(path: Path) -> None:
        select = Selector(LogFilter(convs=("*c1",)))
        lines = read_logs([str(path)], pytest.fail)
        assert sum(len(plain_text(event_line(x.event))) for x in lines if select(x.event))

    growth = {}
    tracemalloc.start()
    try:
        for view in (summary, timeline, plain):
            peaks = []
            for path in (small, large):
                tracemalloc.reset_peak()
                base = tracemalloc.get_traced_memory()[0]
                view(path)
                peaks.append(tracemalloc.get_traced_memory()[1] - base)
            growth[view.__name__] = peaks[1] - peaks[0]
    finally:
        tracemalloc.stop()
    extra = large.stat().st_size - small.stat().st_size  # about 0.9 MB more to read
    # holding the extra events as dicts would take several times `extra`; the views keep
    # counters (a few per conversation), one run, or nothing
    assert max(growth.values()) < extra / 10, (growth, extra)


# -- real processes ---------------------------------------------------------------------------


def _command() -> list[str]:
    return [sys.executable, "-m", "sim"]


def test_done_when_in_a_real_process(tmp_path: Path) -> None:
    env = {**os.environ, "NO_COLOR": "1"}
    scenario = str(SCENARIOS / "inflight_switch.yaml")
    run = subprocess.run(
        [*_command(), "run", scenario, "--variant", "late-snapshot-runtime", "--log-file", "x"],
        cwd=tmp_path,
        capture_output=True,
        env=env,
        timeout=60,
    )
    assert run.returncode == 1  # the variant is caught
    shown = subprocess.run(
        [*_command(), "logs", "x", "--timeline"],
        cwd=tmp_path,
        capture_output=True,
        env=env,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout.decode()
    assert "✗ turn t2 " in out.splitlines()[1]
    assert "switched planner@v1 -> inventory@v1 at t=150ms while it ran" in out
    assert shown.stderr == b""


def test_a_closed_pipe_ends_quietly(big: tuple[Path, int]) -> None:
    path = big[0]
    proc = subprocess.Popen(
        [*_command(), "logs", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0
    assert first.startswith(b"== r0-")
    assert b"Traceback" not in err and err == b""


def test_a_library_user_who_configured_no_logging_sees_no_events() -> None:
    """In a fresh interpreter (structlog unconfigured) a whole run prints nothing, warnings
    included, and still keeps its history."""
    code = """
import anyio
from persisters.memory_store import MemoryTurnStore
from sim import World, default_profiles

async def main():
    world = World(seed=7, store=MemoryTurnStore(), profiles=default_profiles())

    async def story():
        c1 = world.open_conversation("c1", profile="inventory", session_id="s1")
        await c1.send("hello")
        await c1.switch_profile("planner")
        await c1.send("again")

    await world.run(story)
    world.recorder.emit("snapshot.save_failed", conv_id="c1", error="for the test")
    assert len(world.recorder.events) > 5, world.recorder.events

anyio.run(main)
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")
