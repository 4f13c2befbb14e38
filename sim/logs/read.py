"""Reading turnsim's JSON-lines logs, streamed: files, gzip files, stdin.

:func:`read_logs` parses one line at a time and reports a malformed line through a callback
with its line number (a :class:`Malformed`) instead of raising; a file that cannot be read
at all raises :class:`LogFileError`. Only :func:`read_events` (for tests and replay) holds
more than one line.
The views over the events are in :mod:`sim.logs.select`, :mod:`sim.logs.timeline`,
:mod:`sim.logs.summary` and :mod:`sim.logs.replay`; ``docs/logs.md`` documents the events.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

import attrs

#: A line longer than this is reported as malformed and skipped (events are ~0.5 KiB).
MAX_LINE_BYTES = 16 * 1024 * 1024


class LogFileError(Exception):
    """A log file cannot be read at all (missing, a directory, unreadable)."""


@attrs.frozen
class Malformed:
    """One line that is not a log event; ``str()`` is ``FILE:LINE: reason``."""

    source: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.reason}"


@attrs.frozen
class LogLine:
    """One parsed line: where it came from, its exact bytes, and the event."""

    source: str
    number: int
    raw: bytes
    event: dict[str, Any]


def check_log_path(path: str) -> None:
    """Raise :class:`LogFileError` unless ``path`` is ``-`` or a readable regular file."""
    if path == "-":
        return
    if not os.path.exists(path):
        raise LogFileError(f"{path}: no such file")
    if os.path.isdir(path):
        raise LogFileError(f"{path}: is a directory, not a log file")
    if not os.access(path, os.R_OK):
        raise LogFileError(f"{path}: permission denied")


def _maybe_gunzip(stream: IO[bytes]) -> IO[bytes]:
    peek = getattr(stream, "peek", None)
    if peek is not None and peek(2)[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=stream)  # type: ignore[return-value]
    return stream


def open_log(path: str, stdin: IO[bytes] | None = None) -> IO[bytes]:
    """Open a log for reading as bytes: ``-`` is stdin; gzip files are read transparently."""
    if path == "-":
        return _maybe_gunzip(stdin if stdin is not None else sys.stdin.buffer)
    check_log_path(path)
    try:
        raw = open(path, "rb", buffering=1 << 18)  # noqa: SIM115 (closed by read_logs)
    except OSError as exc:
        raise LogFileError(f"{path}: {exc.strerror or exc}") from None
    return _maybe_gunzip(raw)


def parse_line(raw: bytes) -> dict[str, Any] | str:
    """The event on one line, or the reason it is not one."""
    try:
        value = json.loads(raw)
    except UnicodeDecodeError:
        return "not a JSON object (invalid UTF-8)"
    except json.JSONDecodeError as exc:
        return f"not a JSON object ({exc.msg} at column {exc.colno})"
    except RecursionError:
        return "not a JSON object (nested too deeply)"
    if not isinstance(value, dict):
        return f"not a JSON object (got {_json_type(value)})"
    if not isinstance(value.get("event"), str):
        return 'not a log event (no "event" name)'
    return value


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return "a number"


def iter_log(
    stream: IO[bytes], source: str, on_malformed: Callable[[Malformed], None]
) -> Iterator[LogLine]:
    """Parse ``stream`` lazily, one line at a time; blank lines are skipped silently."""
    number = 0
    readline = stream.readline
    while True:
        try:
            raw = readline(MAX_LINE_BYTES + 1)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            on_malformed(Malformed(source, number + 1, f"unreadable ({exc})"))
            return
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # skip the rest of the oversized line
                raw = readline(MAX_LINE_BYTES)
            on_malformed(
                Malformed(source, number, f"line longer than {MAX_LINE_BYTES} bytes, skipped")
            )
            continue
        if not raw.strip():
            continue
        parsed = parse_line(raw)
        if isinstance(parsed, str):
            on_malformed(Malformed(source, number, parsed))
            continue
        yield LogLine(source, number, raw, parsed)


def read_logs(
    paths: Iterable[str],
    on_malformed: Callable[[Malformed], None],
    *,
    stdin: IO[bytes] | None = None,
) -> Iterator[LogLine]:
    """Every event of the given logs in order (``-`` is stdin), streamed."""
    for path in paths:
        stream = open_log(path, stdin)
        source = "<stdin>" if path == "-" else path
        try:
            yield from iter_log(stream, source, on_malformed)
        finally:
            if path != "-":
                stream.close()


def read_events(path: str) -> list[dict[str, Any]]:
    """All events of one log file (malformed lines raise ``ValueError``); for tests, replay."""

    def fail(bad: Malformed) -> None:
        raise ValueError(str(bad))

    return [line.event for line in read_logs([path], fail)]
