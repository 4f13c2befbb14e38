"""sim.logs.read: the streaming reader (files, gzip, stdin) and how it reports bad lines."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.logs.read import MAX_LINE_BYTES, Malformed, iter_log, parse_line, read_events, read_logs
from tests.logs.log_fixtures import run_log


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
