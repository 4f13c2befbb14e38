"""Reading turnsim's JSON-lines logs: streaming, filters, the timeline, the summary, replay.

Everything here works on an iterator of events and keeps only what its view needs:

* :func:`read_logs` parses one line at a time (files, gzip files, stdin) and reports a
  malformed line through a callback with its line number instead of raising;
* :class:`Selector` is the filter of ``turnsim logs``; it remembers only the ids of the
  turns it was asked for;
* :class:`TimelineBuilder` keeps the conversations of the run being read and hands each
  :class:`RunTimeline` over when the run's ``scenario.finished`` arrives;
* :class:`SummaryBuilder` keeps counters;
* :func:`replay_store` rebuilds the rows a run's store holds (all but payloads) from the
  events alone.

``sim/cli_logs.py`` is a thin layer over these; ``docs/logs.md`` documents the events.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from fnmatch import fnmatchcase
from typing import IO, Any

import attrs

from sim.events import RETRIED, SAVE_LOST, SAVED

#: A line longer than this is reported as malformed and skipped (events are ~0.5 KiB).
MAX_LINE_BYTES = 16 * 1024 * 1024
#: ``--turn`` matches a turn or inference id by prefix from this many characters on.
MIN_ID_PREFIX = 4
LEVEL_RANK = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
#: Fields that may hold a runtime key (``--runtime`` looks at all of them).
RUNTIME_FIELDS = (
    "runtime_key",
    "carried_runtime_key",
    "previous_runtime_key",
    "inflight_runtime_key",
)


class LogFileError(Exception):
    """A log file cannot be read at all (missing, a directory, unreadable)."""


# -- reading ----------------------------------------------------------------------------


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


# -- filters ----------------------------------------------------------------------------


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _t(event: dict[str, Any]) -> int | None:
    t = event.get("t_ms")
    return t if isinstance(t, int) and not isinstance(t, bool) else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _seq(event: dict[str, Any]) -> int:
    return _int(event.get("seq"))


def conv_matches(conv_id: str, pattern: str) -> bool:
    """``pattern`` is a conv id, a glob, or the short name after the scenario prefix."""
    return bool(conv_id) and (
        fnmatchcase(conv_id, pattern) or conv_id.rpartition(".")[2] == pattern
    )


def runtime_matches(runtime_key: str, pattern: str) -> bool:
    """``pattern`` is a runtime key, a glob (``planner@*``), or a bare slug (``planner``)."""
    return bool(runtime_key) and (
        fnmatchcase(runtime_key, pattern) or runtime_key.partition("@")[0] == pattern
    )


def _id_matches(value: str, wanted: str) -> bool:
    return bool(value) and (
        value == wanted or (len(wanted) >= MIN_ID_PREFIX and value.startswith(wanted))
    )


@attrs.frozen
class LogFilter:
    """What ``turnsim logs`` selects. Each option ORs its values; options AND together."""

    convs: tuple[str, ...] = ()
    turns: tuple[str, ...] = ()
    runtimes: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    scenarios: tuple[str, ...] = ()
    since_ms: int | None = None
    until_ms: int | None = None
    level: str | None = None

    @property
    def empty(self) -> bool:
        return self == LogFilter()


class Selector:
    """The filter as a predicate over events, applied in log order.

    ``--turn`` names a turn by its scenario label (``t2``), its turn id or inference id
    (or a prefix of at least four characters). Events that only carry ids (saves) are
    matched through the ids learned from the turn's ``inference.started``; switches that
    raced with the turn (``inflight_*``) and violations naming it are selected too.
    """

    def __init__(self, spec: LogFilter) -> None:
        self.spec = spec
        self._min_level = LEVEL_RANK.get(spec.level or "", 0)
        self._turn_ids: set[str] = set()
        self._inference_ids: set[str] = set()

    def __call__(self, event: dict[str, Any]) -> bool:
        spec = self.spec
        name = event["event"]
        if spec.events and not any(fnmatchcase(name, p) for p in spec.events):
            return False
        if spec.scenarios and not any(
            fnmatchcase(_text(event.get("scenario")), p) for p in spec.scenarios
        ):
            return False
        if spec.convs and not any(conv_matches(_text(event.get("conv_id")), p) for p in spec.convs):
            return False
        if spec.since_ms is not None or spec.until_ms is not None:
            t = _t(event)
            if t is None:
                return False
            if spec.since_ms is not None and t < spec.since_ms:
                return False
            if spec.until_ms is not None and t > spec.until_ms:
                return False
        if self._min_level and LEVEL_RANK.get(_text(event.get("level")), 0) < self._min_level:
            return False
        if spec.runtimes and not self._runtime(event):
            return False
        return not spec.turns or self._turn(event)

    def _runtime(self, event: dict[str, Any]) -> bool:
        values = [_text(event.get(f)) for f in RUNTIME_FIELDS]
        if event["event"] == "invariant.violated":
            values += [_text(event.get("expected")), _text(event.get("actual"))]
        return any(runtime_matches(v, p) for v in values if v for p in self.spec.runtimes)

    def _turn(self, event: dict[str, Any]) -> bool:
        turn_id = _text(event.get("turn_id"))
        inference_id = _text(event.get("inference_id"))
        if (turn_id and turn_id in self._turn_ids) or (
            inference_id and inference_id in self._inference_ids
        ):
            return True
        inflight = _text(event.get("inflight_turn_id"))
        if inflight and inflight in self._turn_ids:
            return True
        for wanted in self.spec.turns:
            if (
                _text(event.get("turn")) == wanted
                or _text(event.get("inflight_turn")) == wanted
                or _id_matches(turn_id, wanted)
                or _id_matches(inference_id, wanted)
                or _id_matches(_text(event.get("inflight_turn_id")), wanted)
            ):
                if event["event"] == "inference.started":
                    # Learn the ids here only: under default-turn-id every save carries
                    # the same constant turn id, so saves are matched by inference id.
                    if turn_id:
                        self._turn_ids.add(turn_id)
                    if inference_id:
                        self._inference_ids.add(inference_id)
                return True
        return False


# -- the timeline -----------------------------------------------------------------------


@attrs.define(slots=True)
class ViolationNote:
    """One ``invariant.violated`` event, as shown on the line it concerns."""

    invariant: str
    message: str
    expected: str
    actual: str
    seq: int
    at_seq: int

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.define(slots=True, eq=False)
class TurnInfo:
    """One inference of a conversation, as far as the selected events tell."""

    key: str
    label: str = ""
    turn_id: str = ""
    inference_id: str = ""
    runtime_key: str = ""  # bound when the inference started ('' when not seen)
    profile: str = ""
    started_seq: int = 0
    started_ms: int | None = None
    outcome: str = ""  # completed | failed | cancelled | refused | '' (not finished)
    error: str = ""
    finished: bool = False
    stored: dict[str, str] = attrs.field(factory=dict)  # phase -> stored runtime (last)
    #: (seq, t_ms, phase, carried runtime, stored runtime or '' when refused, event)
    wrong: list[tuple[int, int | None, str, str, str, str]] = attrs.field(factory=list)
    #: (seq, t_ms, previous runtime, new runtime) of switches made while it ran
    raced: list[tuple[int, int | None, str, str]] = attrs.field(factory=list)
    violations: Counter[str] = attrs.field(factory=Counter)
    failed_saves: int = 0
    no_turn_id: bool = False  # its inference started without a turn id of its own

    @property
    def short_id(self) -> str:
        return (self.turn_id or "")[:8]

    @property
    def name(self) -> str:
        """``t2 06c2cdb7``: the label and short id, whichever are known."""
        if self.no_turn_id:
            saved = f", saved as {self.turn_id!r}" if self.turn_id else ""
            return f"{self.label} (no turn id{saved})".strip()
        parts = [self.label, self.short_id]
        if not self.turn_id and self.inference_id:
            parts.append(f"(inference {self.inference_id[:8]})")
        return " ".join(p for p in parts if p) or "(unknown turn)"

    @property
    def bad(self) -> bool:
        return bool(self.wrong or self.violations)

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "turn_id": self.turn_id,
            "inference_id": self.inference_id,
            "runtime_key": self.runtime_key,
            "profile": self.profile,
            "started_ms": self.started_ms,
            "outcome": self.outcome,
            "error": self.error,
            "stored": dict(self.stored),
            "wrong_runtime": [
                {
                    "seq": s,
                    "t_ms": t,
                    "phase": p,
                    "carried_runtime_key": c,
                    "stored_runtime_key": st,
                    "event": e,
                }
                for s, t, p, c, st, e in self.wrong
            ],
            "raced_switches": [
                {"seq": s, "t_ms": t, "previous_runtime_key": a, "runtime_key": b}
                for s, t, a, b in self.raced
            ],
            "violations": dict(self.violations),
        }


@attrs.define(slots=True, eq=False)
class Entry:
    """One line of a conversation's timeline.

    ``inside`` is true for what happened while ``turn`` was running (its phases, a
    switch that raced with it); ``severity`` is ``ok``, ``note``, ``warn`` or ``bad``.
    """

    seq: int
    t_ms: int | None
    event: str
    data: dict[str, Any]
    turn: TurnInfo | None = None
    inside: bool = False
    severity: str = "ok"
    violations: list[ViolationNote] = attrs.field(factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "t_ms": self.t_ms,
            "event": self.event,
            "turn": self.turn.key if self.turn else None,
            "inside": self.inside,
            "severity": self.severity,
            "data": self.data,
            "violations": [v.to_json() for v in self.violations],
        }


@attrs.define(slots=True, eq=False)
class ConversationTimeline:
    """One conversation of one run: its entries in seq order and its turns."""

    conv_id: str
    session_id: str = ""
    entries: list[Entry] = attrs.field(factory=list)
    turns: dict[str, TurnInfo] = attrs.field(factory=dict)  # key -> turn, in start order
    by_turn_id: dict[str, TurnInfo] = attrs.field(factory=dict)
    open_turn: TurnInfo | None = None
    switches: int = 0
    violations: list[ViolationNote] = attrs.field(factory=list)  # not tied to a line

    @property
    def violation_count(self) -> int:
        return sum(len(e.violations) for e in self.entries) + len(self.violations)

    def to_json(self) -> dict[str, Any]:
        return {
            "conv_id": self.conv_id,
            "session_id": self.session_id,
            "switches": self.switches,
            "turns": {k: t.to_json() for k, t in self.turns.items()},
            "entries": [e.to_json() for e in self.entries],
            "violations": [v.to_json() for v in self.violations],
        }


@attrs.define(slots=True, eq=False)
class RunTimeline:
    """One scenario run: header facts, conversations, and what concerns the whole run."""

    scenario: str = ""
    seed: Any = None
    path: str = ""
    variants: tuple[str, ...] = ()
    result: str = ""  # pass | fail | '' (no scenario.finished)
    failures: int | None = None
    conversations: dict[str, ConversationTimeline] = attrs.field(factory=dict)
    notes: list[Entry] = attrs.field(factory=list)  # expectation failures etc. (no conv)
    violations: list[ViolationNote] = attrs.field(factory=list)  # no conversation named

    def findings(self) -> list[tuple[ConversationTimeline, TurnInfo]]:
        """Turns that got a wrong runtime or a violation, in start order."""
        return [
            (conv, turn)
            for conv in self.conversations.values()
            for turn in conv.turns.values()
            if turn.bad
        ]

    @property
    def empty(self) -> bool:
        return not self.conversations and not self.notes and not self.violations

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "path": self.path,
            "variants": list(self.variants),
            "result": self.result,
            "failures": self.failures,
            "findings": [{"conv_id": c.conv_id, **t.to_json()} for c, t in self.findings()],
            "conversations": [c.to_json() for c in self.conversations.values()],
            "notes": [n.to_json() for n in self.notes],
            "violations": [v.to_json() for v in self.violations],
        }


#: Fields of an event an entry keeps (the rest is in the JSON log).
_KEEP = (
    "phase",
    "runtime_key",
    "carried_runtime_key",
    "previous_runtime_key",
    "inflight_runtime_key",
    "inflight_turn",
    "inflight_turn_id",
    "profile",
    "pipeline",
    "error",
    "error_type",
    "attempt",
    "backoff_ms",
    "snapshot_id",
    "reason",
    "restarts",
    "outcome",
    "expected",
    "point",
    "kind",
    "firing",
    "times",
    "depth",
    "inflight",
    "message",
    "step",
    "line",
    "turn",
    "turn_id",
    "inference_id",
)


class TimelineBuilder:
    """Builds one :class:`RunTimeline` per scenario run from events in log order.

    Call :meth:`feed` with every event and whether the filter selected it (run
    boundaries are honoured even when filtered out); it returns the runs completed by
    that event. :meth:`close` returns the last, unfinished run. Memory holds one run.
    """

    def __init__(self) -> None:
        self.run = RunTimeline()
        self._pending: dict[int, list[tuple[ViolationNote, dict[str, Any]]]] = {}

    def feed(self, event: dict[str, Any], selected: bool = True) -> list[RunTimeline]:
        name = event["event"]
        done: list[RunTimeline] = []
        if name == "scenario.started":
            if not self.run.empty:
                done.append(self._finish())
            self.run.scenario = _text(event.get("scenario"))
            self.run.seed = event.get("seed")
            self.run.path = _text(event.get("path"))
            variants = event.get("variants")
            self.run.variants = tuple(variants) if isinstance(variants, list) else ()
            return done
        if name == "scenario.finished":
            self.run.scenario = self.run.scenario or _text(event.get("scenario"))
            self.run.result = _text(event.get("result"))
            failures = event.get("failures")
            self.run.failures = failures if isinstance(failures, int) else None
            done.append(self._finish())
            return done
        if selected:
            self._add(event)
        return done

    def close(self) -> list[RunTimeline]:
        return [] if self.run.empty else [self._finish()]

    # -- building -----------------------------------------------------------------------

    def _finish(self) -> RunTimeline:
        run = self.run
        pending = self._pending
        for conv in run.conversations.values():
            for entry in conv.entries:
                items = pending.get(entry.seq)
                if not items:
                    continue
                rest = []
                for note, event in items:
                    if _text(event.get("conv_id")) not in ("", conv.conv_id):
                        rest.append((note, event))
                        continue
                    entry.violations.append(note)
                    entry.severity = "bad"
                    if entry.turn is not None:
                        entry.turn.violations[note.invariant] += 1
                pending[entry.seq] = rest
        for items in pending.values():
            for note, event in items:
                self._unplaced(run, note, event)
        self._pending = {}
        self.run = RunTimeline()
        return run

    def _unplaced(self, run: RunTimeline, note: ViolationNote, event: dict[str, Any]) -> None:
        """A violation found in the final state (or whose line was filtered out)."""
        conv_id = _text(event.get("conv_id"))
        conv = run.conversations.get(conv_id) if conv_id else None
        if conv is None:
            run.violations.append(note)
            return
        turn = conv.by_turn_id.get(_text(event.get("turn_id")))
        if turn is not None:
            turn.violations[note.invariant] += 1
        phase = _text(event.get("phase"))
        target = None
        for e in conv.entries if turn is not None else ():
            if e.turn is not turn:
                continue
            if e.event in ("inference.started", "inference.refused") and target is None:
                target = e  # the turn's own line, unless a stored save of the phase fits
            if (
                phase
                and e.event in SAVED
                and e.data.get("phase") == phase
                and e.data.get("runtime_key") == note.actual
            ):
                target = e
        if target is not None:
            target.violations.append(note)
            target.severity = "bad"
        else:
            conv.violations.append(note)

    def _conv(self, event: dict[str, Any]) -> ConversationTimeline | None:
        conv_id = _text(event.get("conv_id"))
        if not conv_id:
            return None
        conv = self.run.conversations.get(conv_id)
        if conv is None:
            conv = self.run.conversations[conv_id] = ConversationTimeline(conv_id)
            if not self.run.scenario:
                self.run.scenario = _text(event.get("scenario"))
                self.run.seed = event.get("seed")
        session = _text(event.get("session_id"))
        if session:
            conv.session_id = session
        return conv

    def _turn(self, conv: ConversationTimeline, event: dict[str, Any]) -> TurnInfo | None:
        """The turn an event concerns, created on first sight (filters may hide its start)."""
        inference_id = _text(event.get("inference_id"))
        turn_id = _text(event.get("turn_id"))
        label = _text(event.get("turn"))
        turn = None
        if inference_id:
            turn = conv.turns.get(inference_id)
        if turn is None and turn_id:
            turn = conv.by_turn_id.get(turn_id)
            if turn is not None and inference_id and turn.inference_id not in ("", inference_id):
                turn = None  # the same (constant) turn id for another inference
        if turn is None and label and not (inference_id or turn_id):
            turn = next((t for t in conv.turns.values() if t.label == label), None)
        if turn is None:
            key = inference_id or turn_id or label
            if not key:
                return None
            turn = TurnInfo(key=key, inference_id=inference_id, turn_id=turn_id, label=label)
            conv.turns[key] = turn
        if turn_id and turn_id not in conv.by_turn_id:
            conv.by_turn_id[turn_id] = turn
        turn.label = turn.label or label
        turn.turn_id = turn.turn_id or turn_id
        turn.inference_id = turn.inference_id or inference_id
        return turn

    def _add(self, event: dict[str, Any]) -> None:
        name = event["event"]
        seq, t = _seq(event), _t(event)
        if name == "invariant.violated":
            note = ViolationNote(
                invariant=_text(event.get("invariant")),
                message=_text(event.get("message")),
                expected=_text(event.get("expected")),
                actual=_text(event.get("actual")),
                seq=seq,
                at_seq=_int(event.get("at_seq")),
            )
            self._pending.setdefault(note.at_seq, []).append((note, event))
            return
        data = {k: event[k] for k in _KEEP if k in event and event[k] not in (None, "")}
        entry = Entry(seq, t, name, data)
        conv = self._conv(event)
        if conv is None:
            entry.severity = "bad" if name == "expectation.failed" else "note"
            if name != "step.started":
                self.run.notes.append(entry)
            return
        if name == "step.started":
            return  # (a step naming a conversation would go here; none does yet)
        if name == "prompt.queued" and not (event.get("inflight") or _int(event.get("depth")) > 1):
            return  # it started at once: the turn's own line says all there is
        self._classify(conv, entry, event)
        conv.entries.append(entry)

    def _classify(self, conv: ConversationTimeline, entry: Entry, event: dict[str, Any]) -> None:
        name = entry.event
        data = entry.data
        if name == "inference.started":
            turn = self._turn(conv, event)
            if turn is not None:
                turn.runtime_key = _text(event.get("runtime_key"))
                turn.profile = _text(event.get("profile"))
                turn.started_seq, turn.started_ms = entry.seq, entry.t_ms
                turn.no_turn_id = not _text(event.get("turn_id"))
                conv.open_turn = turn
            entry.turn = turn
            return
        if name == "inference.refused":
            turn = self._turn(conv, event)
            if turn is not None:
                turn.outcome, turn.error, turn.finished = "refused", _text(event.get("error")), True
                turn.profile = _text(event.get("profile"))
                turn.started_seq, turn.started_ms = entry.seq, entry.t_ms
            entry.turn, entry.severity = turn, "warn"
            return
        if name == "profile.switched":
            conv.switches += 1
            racing = None
            if data.get("inflight_runtime_key") or data.get("inflight_turn_id"):
                racing = conv.by_turn_id.get(_text(event.get("inflight_turn_id")))
                if racing is None and conv.open_turn is not None:
                    racing = conv.open_turn
                if racing is None:
                    racing = self._turn(
                        conv,
                        {
                            "turn_id": event.get("inflight_turn_id"),
                            "turn": event.get("inflight_turn"),
                        },
                    )
                entry.severity = "warn"
            if racing is not None:
                racing.raced.append(
                    (
                        entry.seq,
                        entry.t_ms,
                        _text(event.get("previous_runtime_key")),
                        _text(event.get("runtime_key")),
                    )
                )
                entry.turn, entry.inside = racing, not racing.finished
            return
        if name in ("conversation.crashed", "profile.switch_refused"):
            entry.severity = "warn"
            return
        if name in ("conversation.started", "conversation.restarted", "conversation.stopped"):
            entry.severity = "note" if name == "conversation.stopped" else "ok"
            return
        if name == "prompt.queued":
            entry.severity = "note"  # shown only when it had to wait (see _add)
            entry.inside = conv.open_turn is not None and not conv.open_turn.finished
            return
        if name == "expectation.failed":
            entry.severity = "bad"
            return
        if name == "fault.injected":
            entry.severity = "warn"
            open_turn = conv.open_turn
            if open_turn is not None and not open_turn.finished:
                entry.turn, entry.inside = open_turn, True
            return
        turn = self._turn(conv, event)
        entry.turn = turn
        if turn is None:
            return
        entry.inside = not turn.finished and name not in ("turn.resaved", "turn.resave_refused")
        if name == "inference.finished":
            turn.outcome = _text(event.get("outcome"))
            turn.error = _text(event.get("error"))
            turn.finished = True
            if conv.open_turn is turn:
                conv.open_turn = None
            entry.inside = True
            entry.severity = "ok" if turn.outcome == "completed" else "warn"
            return
        if name == "inference.cancel_requested":
            entry.severity = "warn"
            return
        self._save(turn, entry, event)

    def _save(self, turn: TurnInfo, entry: Entry, event: dict[str, Any]) -> None:
        name = entry.event
        phase = _text(event.get("phase"))
        stored = _text(event.get("runtime_key"))
        carried = _text(event.get("carried_runtime_key"))
        if name in SAVED:
            if phase:
                turn.stored[phase] = stored
            carried = carried or stored
        else:
            # On failures and retries runtime_key is what the save carried (nothing stored).
            carried, stored = carried or stored, ""
        own = name not in ("turn.resaved", "turn.resave_refused")
        if turn.runtime_key and (
            (stored and stored != turn.runtime_key) or (own and carried != turn.runtime_key)
        ):
            turn.wrong.append((entry.seq, entry.t_ms, phase, carried, stored, name))
            entry.severity = "bad"
        if name in SAVE_LOST:
            turn.failed_saves += 1
            if entry.severity != "bad":
                entry.severity = "bad" if name == "snapshot.save_error_swallowed" else "warn"
        elif name in RETRIED:
            entry.severity = "warn" if entry.severity != "bad" else "bad"
        elif name == "turn.resave_refused":
            expected = event.get("expected") is True
            entry.severity = "warn" if expected else "bad"


def build_timelines(events: Iterable[dict[str, Any]]) -> list[RunTimeline]:
    """Every run's timeline from a sequence of events (all selected)."""
    builder = TimelineBuilder()
    out: list[RunTimeline] = []
    for event in events:
        out.extend(builder.feed(event))
    out.extend(builder.close())
    return out


# -- the summary ------------------------------------------------------------------------

#: How many violations / expectation failures the summary lists one by one.
SUMMARY_DETAIL = 50


@attrs.define(slots=True)
class RuntimeCounts:
    turns: int = 0
    saves: int = 0
    failed_saves: int = 0
    switched_to: int = 0

    def to_json(self) -> dict[str, int]:
        return attrs.asdict(self)


@attrs.define(slots=True)
class ConversationCounts:
    scenario: str = ""
    session_id: str = ""
    events: int = 0
    turns: int = 0
    switches: int = 0
    inflight_switches: int = 0
    saves: int = 0
    failed_saves: int = 0
    violations: int = 0
    last_t_ms: int = 0

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.define
class Summary:
    """Counters over the selected events; violations are kept first and in detail."""

    lines: int = 0
    events: int = 0
    malformed: int = 0
    runs: int = 0
    failed_runs: int = 0
    by_event: Counter[str] = attrs.field(factory=Counter)
    by_level: Counter[str] = attrs.field(factory=Counter)
    violations_by_invariant: Counter[str] = attrs.field(factory=Counter)
    violations: list[dict[str, Any]] = attrs.field(factory=list)  # first SUMMARY_DETAIL
    expectation_failures: list[dict[str, Any]] = attrs.field(factory=list)
    expectation_failure_count: int = 0
    failed_run_names: list[str] = attrs.field(factory=list)
    runtimes: dict[str, RuntimeCounts] = attrs.field(factory=dict)
    conversations: dict[str, ConversationCounts] = attrs.field(factory=dict)
    unknown_events: Counter[str] = attrs.field(factory=Counter)

    @property
    def violation_count(self) -> int:
        return sum(self.violations_by_invariant.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "violations": {
                "count": self.violation_count,
                "by_invariant": dict(self.violations_by_invariant.most_common()),
                "first": self.violations,
            },
            "expectation_failures": {
                "count": self.expectation_failure_count,
                "first": self.expectation_failures,
            },
            "runs": {
                "count": self.runs,
                "failed": self.failed_runs,
                "failed_names": self.failed_run_names,
            },
            "lines": self.lines,
            "events": self.events,
            "malformed": self.malformed,
            "by_event": dict(sorted(self.by_event.items())),
            "by_level": dict(sorted(self.by_level.items())),
            "unknown_events": dict(sorted(self.unknown_events.items())),
            "runtimes": {k: v.to_json() for k, v in sorted(self.runtimes.items())},
            "conversations": {k: v.to_json() for k, v in self.conversations.items()},
        }


class SummaryBuilder:
    """Counts events per name, per runtime and per conversation; keeps no event."""

    def __init__(self, catalogue: Iterable[str] = ()) -> None:
        self.summary = Summary()
        self._catalogue = frozenset(catalogue)

    def _runtime(self, key: str) -> RuntimeCounts:
        counts = self.summary.runtimes.get(key)
        if counts is None:
            counts = self.summary.runtimes[key] = RuntimeCounts()
        return counts

    def add(self, event: dict[str, Any]) -> None:
        s = self.summary
        name = event["event"]
        s.events += 1
        s.by_event[name] += 1
        s.by_level[_text(event.get("level")) or "-"] += 1
        if self._catalogue and name not in self._catalogue:
            s.unknown_events[name] += 1
        conv_id = _text(event.get("conv_id"))
        conv = None
        if conv_id:
            conv = s.conversations.get(conv_id)
            if conv is None:
                conv = s.conversations[conv_id] = ConversationCounts(
                    scenario=_text(event.get("scenario"))
                )
            conv.events += 1
            conv.session_id = _text(event.get("session_id")) or conv.session_id
            t = _t(event)
            if t is not None and t > conv.last_t_ms:
                conv.last_t_ms = t
        runtime = _text(event.get("runtime_key"))
        if name == "scenario.finished":
            s.runs += 1
            if event.get("result") == "fail":
                s.failed_runs += 1
                if len(s.failed_run_names) < SUMMARY_DETAIL:
                    s.failed_run_names.append(
                        f"{_text(event.get('scenario'))} seed {event.get('seed')}"
                    )
        elif name == "inference.started":
            if runtime:
                self._runtime(runtime).turns += 1
            if conv:
                conv.turns += 1
        elif name == "profile.switched":
            if runtime:
                self._runtime(runtime).switched_to += 1
            if conv:
                conv.switches += 1
                if event.get("inflight_runtime_key") or event.get("inflight_turn_id"):
                    conv.inflight_switches += 1
        elif name in SAVED:
            if runtime:
                self._runtime(runtime).saves += 1
            if conv:
                conv.saves += 1
        elif name in SAVE_LOST:
            carried = _text(event.get("carried_runtime_key")) or runtime
            if carried:
                self._runtime(carried).failed_saves += 1
            if conv:
                conv.failed_saves += 1
        elif name == "invariant.violated":
            s.violations_by_invariant[_text(event.get("invariant")) or "?"] += 1
            if conv:
                conv.violations += 1
            if len(s.violations) < SUMMARY_DETAIL:
                s.violations.append(
                    {
                        k: event.get(k)
                        for k in (
                            "scenario",
                            "seed",
                            "conv_id",
                            "turn_id",
                            "phase",
                            "invariant",
                            "expected",
                            "actual",
                            "message",
                            "seq",
                            "at_seq",
                        )
                    }
                )
        elif name == "expectation.failed":
            s.expectation_failure_count += 1
            if len(s.expectation_failures) < SUMMARY_DETAIL:
                s.expectation_failures.append(
                    {
                        k: event.get(k)
                        for k in ("scenario", "seed", "conv_id", "step", "line", "message")
                    }
                )


def summarize(events: Iterable[dict[str, Any]], catalogue: Iterable[str] = ()) -> Summary:
    builder = SummaryBuilder(catalogue)
    for event in events:
        builder.add(event)
    return builder.summary


# -- replay: the store's rows from the log ----------------------------------------------


@attrs.define
class StoreImage:
    """The rows a run's store holds, rebuilt from its log (payload and metadata JSON aside).

    Keys and columns follow ``persisters/schema.py``: ``conversations`` by conv id,
    ``turns`` by (conv_id, session_id, turn_id), ``snapshots`` by snapshot id.
    """

    conversations: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    turns: dict[tuple[str, str, str], dict[str, Any]] = attrs.field(factory=dict)
    snapshots: dict[int, dict[str, Any]] = attrs.field(factory=dict)


def replay_store(events: Iterable[dict[str, Any]]) -> StoreImage:
    """Apply every storing event of a run, in log order, the way the store applied it."""
    image = StoreImage()
    before_switch: dict[str, dict[str, Any] | None] = {}  # undo for a failed pointer write
    failed_touch: set[str] = set()  # the activity write before inference.finished failed
    for e in events:
        name = e["event"]
        t = _t(e) or 0
        if name == "conversation.index_save_failed":
            conv_id = e["conv_id"]
            if e.get("operation") == "touch":
                failed_touch.add(conv_id)
            elif conv_id in before_switch:
                old = before_switch.pop(conv_id)
                if old is None:
                    image.conversations.pop(conv_id, None)
                else:
                    image.conversations[conv_id] = old
            continue
        if name in ("conversation.started", "profile.switched", "inference.finished"):
            conv_id = e["conv_id"]
            row = image.conversations.get(conv_id)
            if name == "inference.finished" or (row is not None and name != "profile.switched"):
                if row is not None and conv_id not in failed_touch:  # activity, not the pointer
                    row["last_activity_ms"] = max(row["last_activity_ms"], t)
                failed_touch.discard(conv_id)
                continue
            before_switch[conv_id] = dict(row) if row is not None else None
            if row is None:
                row = image.conversations[conv_id] = {"created_at_ms": t, "last_activity_ms": t}
            row["session_id"] = e["session_id"]
            row["current_runtime_key"] = e["runtime_key"]
            row["profile_slug"] = e["profile"]
            row["last_activity_ms"] = max(row["last_activity_ms"], t)
        elif name in SAVED:
            created = e.get("created_at_ms", t)
            key = (e["conv_id"], e["session_id"], e["turn_id"])
            image.snapshots[e["snapshot_id"]] = {
                "conv_id": key[0],
                "session_id": key[1],
                "turn_id": key[2],
                "phase": e["phase"],
                "created_at_ms": created,
                "runtime_key": e["runtime_key"],
                "inference_id": e["inference_id"],
            }
            row = image.turns.get(key)
            if row is None:
                row = image.turns[key] = {
                    "turn_created_at_ms": created,
                    "updated_at_ms": created,
                }
            row["updated_at_ms"] = max(row["updated_at_ms"], created)
            row["runtime_key"] = e["runtime_key"]
            row["inference_id"] = e["inference_id"]
    return image
