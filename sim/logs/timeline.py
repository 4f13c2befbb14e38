"""The timeline model: a run's conversations, their turns and what happened to each.

:class:`TimelineBuilder` reads events in log order, keeps the conversations of the run being
read and hands each :class:`RunTimeline` over when the run's ``scenario.finished`` arrives
(memory holds one run). A turn (:class:`TurnInfo`) knows the runtime bound when its
inference started, what each phase stored, the saves that carried another runtime, the
switches that raced with it and the violations found about it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import attrs

from sim.events import RETRIED, SAVE_LOST, SAVED
from sim.logs.fields import int_of, seq_of, text_of, time_of


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
    outcome: str = ""  # completed | failed | cancelled | refused | interrupted | '' (running)
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
#: Saves by writers other than the turn's own pipelines (the second and the first writer).
_OTHER_WRITERS = ("turn.resaved", "turn.resave_refused", "turn.cli_saved", "turn.cli_save_refused")

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
            self.run.scenario = text_of(event.get("scenario"))
            self.run.seed = event.get("seed")
            self.run.path = text_of(event.get("path"))
            variants = event.get("variants")
            self.run.variants = tuple(variants) if isinstance(variants, list) else ()
            return done
        if name == "scenario.finished":
            self.run.scenario = self.run.scenario or text_of(event.get("scenario"))
            self.run.result = text_of(event.get("result"))
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
                    if text_of(event.get("conv_id")) not in ("", conv.conv_id):
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
        conv_id = text_of(event.get("conv_id"))
        conv = run.conversations.get(conv_id) if conv_id else None
        if conv is None:
            run.violations.append(note)
            return
        turn = conv.by_turn_id.get(text_of(event.get("turn_id")))
        if turn is not None:
            turn.violations[note.invariant] += 1
        phase = text_of(event.get("phase"))
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
        conv_id = text_of(event.get("conv_id"))
        if not conv_id:
            return None
        conv = self.run.conversations.get(conv_id)
        if conv is None:
            conv = self.run.conversations[conv_id] = ConversationTimeline(conv_id)
            if not self.run.scenario:
                self.run.scenario = text_of(event.get("scenario"))
                self.run.seed = event.get("seed")
        session = text_of(event.get("session_id"))
        if session:
            conv.session_id = session
        return conv

    def _turn(self, conv: ConversationTimeline, event: dict[str, Any]) -> TurnInfo | None:
        """The turn an event concerns, created on first sight (filters may hide its start)."""
        inference_id = text_of(event.get("inference_id"))
        turn_id = text_of(event.get("turn_id"))
        label = text_of(event.get("turn"))
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
        seq, t = seq_of(event), time_of(event)
        if name == "invariant.violated":
            note = ViolationNote(
                invariant=text_of(event.get("invariant")),
                message=text_of(event.get("message")),
                expected=text_of(event.get("expected")),
                actual=text_of(event.get("actual")),
                seq=seq,
                at_seq=int_of(event.get("at_seq")),
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
        if name == "prompt.queued" and not (
            event.get("inflight") or int_of(event.get("depth")) > 1
        ):
            return  # it started at once: the turn's own line says all there is
        self._classify(conv, entry, event)
        conv.entries.append(entry)

    def _classify(self, conv: ConversationTimeline, entry: Entry, event: dict[str, Any]) -> None:
        name = entry.event
        data = entry.data
        if name == "inference.started":
            turn = self._turn(conv, event)
            if turn is not None:
                turn.runtime_key = text_of(event.get("runtime_key"))
                turn.profile = text_of(event.get("profile"))
                turn.started_seq, turn.started_ms = entry.seq, entry.t_ms
                turn.no_turn_id = not text_of(event.get("turn_id"))
                conv.open_turn = turn
            entry.turn = turn
            return
        if name == "inference.refused":
            turn = self._turn(conv, event)
            if turn is not None:
                error = text_of(event.get("error"))
                turn.outcome, turn.error, turn.finished = "refused", error, True
                turn.profile = text_of(event.get("profile"))
                turn.started_seq, turn.started_ms = entry.seq, entry.t_ms
            entry.turn, entry.severity = turn, "warn"
            return
        if name == "profile.switched":
            conv.switches += 1
            racing = None
            if data.get("inflight_runtime_key") or data.get("inflight_turn_id"):
                racing = conv.by_turn_id.get(text_of(event.get("inflight_turn_id")))
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
                        text_of(event.get("previous_runtime_key")),
                        text_of(event.get("runtime_key")),
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
        entry.inside = not turn.finished and name not in _OTHER_WRITERS
        if name == "inference.finished":
            turn.outcome = text_of(event.get("outcome"))
            turn.error = text_of(event.get("error"))
            turn.finished = True
            if conv.open_turn is turn:
                conv.open_turn = None
            entry.inside = True
            entry.severity = "ok" if turn.outcome == "completed" else "warn"
            return
        if name == "inference.cancel_requested":
            entry.severity = "warn"
            return
        if name == "turn.recovered":  # a restart interrupted it; the boot closes it now
            turn.outcome, turn.finished = "interrupted", True
            if conv.open_turn is turn:
                conv.open_turn = None
            entry.severity = "warn"
            return
        self._save(turn, entry, event)

    def _save(self, turn: TurnInfo, entry: Entry, event: dict[str, Any]) -> None:
        name = entry.event
        phase = text_of(event.get("phase"))
        stored = text_of(event.get("runtime_key"))
        carried = text_of(event.get("carried_runtime_key"))
        if name in SAVED:
            if phase:
                turn.stored[phase] = stored
            carried = carried or stored
        else:
            # On failures and retries runtime_key is what the save carried (nothing stored).
            carried, stored = carried or stored, ""
        own = name not in _OTHER_WRITERS
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
        elif name in ("turn.resave_refused", "turn.cli_save_refused"):
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
