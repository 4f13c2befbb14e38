"""Rendering a log for a terminal: the readable line view, the timeline, the summary.

A line is a list of styled :data:`~sim.logs.screen.Segment` s; a
:class:`~sim.logs.screen.Screen` prints them (colours and wrapping by rich).
:func:`print_summary` prints rich tables.
Every value is escaped by :func:`sim.printable.printable` on the way out. What is shown is
decided here; what happened is decided by the models in :mod:`sim.logs.timeline` and
:mod:`sim.logs.summary`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import IO, Any

from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from persisters.model import PHASES, dumps
from sim.events import CATALOGUE, CONTEXT_FIELDS, SAVE_LOST
from sim.logs.fields import LEVEL_RANK
from sim.logs.screen import Screen, Segment, plain
from sim.logs.summary import Summary
from sim.logs.timeline import ConversationTimeline, Entry, RunTimeline, TurnInfo, ViolationNote
from sim.printable import printable

__all__ = ["Screen", "Segment", "event_line", "event_lines", "plain", "print_summary"]

#: Conversations listed in the text summary (all of them are in --summary --json).
MAX_SUMMARY_CONVERSATIONS = 200
_SEVERITY_STYLE = {"ok": "", "note": "dim", "warn": "yellow", "bad": "red"}
_REFUSALS = ("TurnRewriteError", "EmptyRuntimeError", "InvalidSaveError")
_HIDDEN = {"event", "seq", "t_ms", "level", "scenario", "seed"}
_SHORT_IDS = {"turn_id", "inference_id", "inflight_turn_id"}


def _t(t_ms: Any) -> str:
    return f"t={t_ms}ms" if isinstance(t_ms, int) else "t=?"


def _value(key: str, value: Any) -> str:
    if isinstance(value, str):
        if key in _SHORT_IDS and len(value) > 8:
            return value[:8]
        return value if value and " " not in value and '"' not in value else dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return dumps(value)


# -- the line view ------------------------------------------------------------------------


def event_line(event: dict[str, Any]) -> list[Segment]:
    """One event as a readable line: seq, virtual time, name, context first, then the rest."""
    name = event["event"]
    level = event.get("level") if isinstance(event.get("level"), str) else ""
    if name in ("invariant.violated", "expectation.failed"):
        style = "red bold"
    elif name in SAVE_LOST or LEVEL_RANK.get(level, 0) >= LEVEL_RANK["error"]:
        style = "red"
    elif LEVEL_RANK.get(level, 0) >= LEVEL_RANK["warning"]:
        style = "yellow"
    elif name == "profile.switched":
        style = "cyan"
    elif name == "inference.started":
        style = "bold"
    else:
        style = ""
    seq = event.get("seq", "")
    out: list[Segment] = [
        (f"{seq!s:>6} ", "dim"),
        (f"{_t(event.get('t_ms')):>10}  ", "dim"),
        (f"{name:<29}", style),
    ]
    keys = [k for k in CONTEXT_FIELDS if k in event]
    keys += sorted(k for k in event if k not in _HIDDEN and k not in CONTEXT_FIELDS)
    for key in keys:
        value = event[key]
        if value is None or value == "":
            continue
        out.append((f" {key}=", "dim"))
        out.append((_value(key, value), ""))
    return out


def _run_header(event: dict[str, Any]) -> list[Segment]:
    return [(f"== {event.get('scenario', '?')} · seed {event.get('seed', '?')}", "bold")]


def event_lines(events: Iterable[dict[str, Any]]) -> Iterator[list[Segment]]:
    """The line view: each event as :func:`event_line`, after a ``== scenario · seed`` line
    whenever a new run begins."""
    last_run: tuple[Any, Any] | None = None
    for event in events:
        run_key = (event.get("scenario"), event.get("seed"))
        if run_key != last_run:
            yield _run_header(event)
            last_run = run_key
        yield event_line(event)


# -- the timeline -------------------------------------------------------------------------


def _bound(turn: TurnInfo | None) -> str:
    return turn.runtime_key if turn is not None else ""


def _turn_header(turn: TurnInfo) -> list[Segment]:
    style = "bold red" if turn.bad else "bold"
    out: list[Segment] = [(f"turn {turn.name}", style)]
    if turn.runtime_key:
        out.append((f"  {turn.runtime_key}", style))
    if turn.inference_id:
        out.append((f"  inference {turn.inference_id[:8]}", "dim"))
    outcome = turn.outcome or ("running" if not turn.finished else "")
    if outcome:
        out.append((f"  {outcome}", "" if outcome in ("completed", "running") else "yellow"))
    phases = [p for p in PHASES if p in turn.stored]
    if phases:
        out.append(("  stored", "dim"))
        for phase in phases:
            runtime = turn.stored[phase]
            if turn.runtime_key and runtime != turn.runtime_key:
                out.append((f" {phase}={runtime}", "red bold"))
            else:
                out.append((f" {phase}", "dim"))
    carried = sorted({w[3] for w in turn.wrong if w[3] != turn.runtime_key})
    if carried:
        out.append((f"  ✗ WRONG RUNTIME: saves carried {', '.join(carried)}", "red bold"))
    stored = sorted({w[4] for w in turn.wrong if w[4] and w[4] != turn.runtime_key})
    if stored:
        out.append((f"  ✗ stored as {', '.join(stored)}", "red bold"))
    if turn.violations:
        n = sum(turn.violations.values())
        out.append((f"  ✗ {n} violation{'s' if n != 1 else ''}", "red bold"))
    return out


#: How a switch's line ends, by its reason.
_SWITCH_REASON = {
    "prompt": ", requested by the prompt)",
    "profile_updated": ", a new version of it)",
}


def _entry_text(entry: Entry) -> list[Segment]:
    """What one timeline entry says (without time and indentation)."""
    d = entry.data
    name = entry.event
    turn = entry.turn
    style = _SEVERITY_STYLE[entry.severity]
    if name == "inference.started" and turn is not None:
        return _turn_header(turn)
    if name == "inference.refused":
        label = turn.name if turn is not None else d.get("turn", "")
        return [(f"turn {label} refused: {d.get('error', '')}", "yellow")]
    if name == "inference.finished":
        outcome = d.get("outcome", "")
        text = f"finished: {outcome}" + (f": {d['error']}" if d.get("error") else "")
        return [(text, "dim" if outcome == "completed" else "yellow")]
    if name == "inference.cancel_requested":
        return [("cancel requested", "yellow")]
    if name == "profile.switched":
        previous = d.get("previous_runtime_key") or "(none)"
        out: list[Segment] = [
            (f"switch {previous} -> {d.get('runtime_key', '')}", "cyan bold"),
            (f"  (profile {d.get('profile', '?')}", "dim"),
            (_SWITCH_REASON.get(d.get("reason", ""), ")"), "dim"),
        ]
        if entry.severity == "warn":
            racing = turn.name if turn is not None else d.get("inflight_turn", "?")
            out.append(
                (
                    f"  ⚡ IN FLIGHT: turn {racing} was running, bound to "
                    f"{d.get('inflight_runtime_key') or _bound(turn) or '?'}",
                    "yellow bold",
                )
            )
        return out
    if name in ("snapshot.saved", "turn.persisted"):
        bound = _bound(turn)
        stored = d.get("runtime_key", "")
        carried = d.get("carried_runtime_key", stored)
        out = [(f"{d.get('phase', '?'):<15} saved    ", style), (stored, style)]
        if d.get("phase") == "final":
            hook = "final persister" if name == "turn.persisted" else "snapshot hook"
            out.append((f"  ({hook})", "dim"))
        if carried != stored:
            out.append((f"  carried {carried}", "red bold" if carried != bound else "dim"))
        if bound and (stored != bound or carried != bound):
            out.append((f"  ✗ bound {bound}", "red bold"))
        if "snapshot_id" in d:
            out.append((f"  #{d['snapshot_id']}", "dim"))
        return out
    if name in ("snapshot.save_failed", "turn.persist_failed", "snapshot.save_error_swallowed"):
        bound = _bound(turn)
        carried = d.get("carried_runtime_key", d.get("runtime_key", ""))
        if name == "snapshot.save_error_swallowed":
            word = "SWALLOWED"
        else:
            word = "REFUSED  " if d.get("error_type") in _REFUSALS else "FAILED   "
        pipeline = "final persister" if d.get("pipeline") == "final" else "snapshot hook"
        phase = d.get("phase", "?")
        out = [(f"{phase:<15} {word}", f"{style} bold"), (f"carried {carried}", style)]
        if bound and carried != bound:
            out.append((f"  ✗ bound {bound}", "red bold"))
        if d.get("error_type") in _REFUSALS and bound and carried != bound:
            out.append((f"  ({pipeline}, {d['error_type']})", "dim"))  # the lines say why
        else:
            out.append((f"  ({pipeline}) {d.get('error_type', '')}: {d.get('error', '')}", "dim"))
        return out
    if name in ("snapshot.save_retry", "turn.persist_retry"):
        return [
            (
                f"{d.get('phase', '?'):<15} retry {d.get('attempt', '?')} in "
                f"{d.get('backoff_ms', '?')}ms: {d.get('error', '')}",
                style,
            )
        ]
    if name in ("turn.cli_saved", "turn.cli_save_refused"):
        label = turn.name if turn is not None else d.get("turn", "?")
        carried = d.get("carried_runtime_key") or "(none: from the metadata)"
        if name == "turn.cli_saved":
            text = f"command-line persister saved turn {label} ({d.get('phase', '?')}, first "
            text += f"writer): carried {carried}, stored {d.get('runtime_key', '')}"
            return [(text, style)]
        expected = " (expected)" if d.get("expected") is True else ""
        return [
            (f"command-line persister's save of turn {label} failed{expected}", style),
            (f"  {d.get('error', '')}", "dim"),
        ]
    if name == "profile.updated":
        previous = d.get("previous_runtime_key") or "(none)"
        text = f"profile {d.get('profile', '?')} updated: {previous} -> "
        return [(text + (d.get("runtime_key") or "(no runtime)"), "cyan")]
    if name in ("turn.resaved", "turn.resave_refused"):
        label = turn.name if turn is not None else d.get("turn", "?")
        carried = d.get("carried_runtime_key", "")
        if name == "turn.resaved":
            text = f"second writer re-saved turn {label} ({d.get('phase', '?')}): carried "
            text += f"{carried}, stored {d.get('runtime_key', '')}"
            bound = _bound(turn)
            if bound and d.get("runtime_key") != bound:
                text += f"  ✗ bound {bound}"
            return [(text, style)]
        expected = " (expected)" if d.get("expected") is True else ""
        return [
            (f"second writer's save of turn {label} refused{expected}: carried {carried}", style),
            (f"  {d.get('error', '')}", "dim"),
        ]
    if name == "conversation.started":
        runtime = d.get("runtime_key") or "(no runtime)"
        return [(f"conversation started  profile {d.get('profile', '?')} -> {runtime}", "")]
    if name == "conversation.restarted":
        runtime = d.get("runtime_key") or "(no runtime)"
        return [
            (
                f"conversation restarted from the store  profile {d.get('profile', '?')} -> "
                f"{runtime}  (restart {d.get('restarts', '?')})",
                "",
            )
        ]
    if name == "conversation.crashed":
        return [
            (
                f"conversation crashed: {d.get('error_type', '')}: {d.get('error', '')}",
                "yellow",
            )
        ]
    if name == "conversation.stopped":
        return [("conversation stopped", "dim")]
    if name == "profile.switch_refused":
        return [
            (f"switch to profile {d.get('profile', '?')} refused: {d.get('error', '')}", "yellow")
        ]
    if name == "prompt.queued":
        label = d.get("turn", "")
        return [
            (f"queued turn {label} behind the running one (depth {d.get('depth', '?')})", style)
        ]
    if name == "fault.injected":
        where = ", ".join(f"{k} {d[k]}" for k in ("pipeline", "phase") if k in d)
        return [
            (
                f"fault {d.get('point', '?')} fired ({d.get('kind', '?')}, "
                f"{d.get('firing', '?')}/{d.get('times', '?')})" + (f"  {where}" if where else ""),
                "yellow",
            )
        ]
    if name == "expectation.failed":
        return [
            (
                f"✗ expectation failed (step {d.get('step', '?')}, line {d.get('line', '?')}): "
                f"{d.get('message', '')}",
                "red bold",
            )
        ]
    rest = " ".join(f"{k}={_value(k, v)}" for k, v in d.items())
    return [(f"{name}  {rest}".rstrip(), style or "dim")]


def _finding(conv_id: str, turn: TurnInfo) -> list[Segment]:
    text = f"✗ turn {turn.name} in {conv_id}"
    parts = []
    if turn.runtime_key:
        parts.append(f"bound {turn.runtime_key} at {_t(turn.started_ms)}")
    carried: dict[str, list[str]] = {}
    stored: dict[str, list[str]] = {}
    for _seq, t, phase, c, s, _event in turn.wrong:
        if c != turn.runtime_key:
            carried.setdefault(c, []).append(f"{phase} {_t(t)}")
        if s and s != turn.runtime_key:
            stored.setdefault(s, []).append(phase)
    for runtime, where in carried.items():
        n = len(where)
        parts.append(f"{n} save{'s' if n != 1 else ''} carried {runtime} ({', '.join(where)})")
    for runtime, phases in stored.items():
        parts.append(f"stored as {runtime} ({', '.join(phases)})")
    for _seq, t, previous, new in turn.raced:
        parts.append(f"switched {previous or '(none)'} -> {new} at {_t(t)} while it ran")
    if turn.violations:
        listed = ", ".join(
            f"{name}" + (f" x{n}" if n > 1 else "") for name, n in sorted(turn.violations.items())
        )
        parts.append(f"violations: {listed}")
    return [(text + ": " + "; ".join(parts), "red bold")]


def timeline_lines(run: RunTimeline) -> Iterator[list[Segment]]:
    """The readable timeline of one run, line by line."""
    head: list[Segment] = [(f"== {run.scenario or '(unknown scenario)'}", "bold")]
    if run.seed is not None:
        head.append((f" · seed {run.seed}", "bold"))
    if run.variants:
        head.append((f" · variant {'+'.join(run.variants)}", "bold magenta"))
    if run.path:
        head.append((f" · {run.path}", "dim"))
    if run.result == "pass":
        head.append(("  PASS", "green bold"))
    elif run.result == "fail":
        n = run.failures
        head.append((f"  FAIL ({n} failure{'s' if n != 1 else ''})", "red bold"))
    else:
        head.append(("  (no scenario.finished: run incomplete or filtered)", "dim"))
    yield head
    for conv, turn in run.findings():
        yield [("   ", ""), *_finding(conv.conv_id, turn)]
    for note in run.notes:
        yield [("   ", ""), *_entry_text(note)]
    for v in run.violations:
        yield [("   ", ""), (f"✗ {v.invariant}: {v.message}", "red bold")]
    for conv in run.conversations.values():
        yield []
        yield _conversation_header(conv)
        width = max((len(_t(e.t_ms)) for e in conv.entries), default=6)
        for entry in conv.entries:
            indent = "      " if entry.inside and entry.event != "inference.started" else "  "
            yield [(f"  {_t(entry.t_ms):>{width}}", "dim"), (indent, ""), *_entry_text(entry)]
            for v in entry.violations:
                yield [
                    (" " * (width + 2) + indent + "    ", ""),
                    (f"✗ {v.invariant}", "red bold"),
                    (f": {_violation_text(v, entry.data.get('error'))}", "red"),
                ]
        for v in conv.violations:
            yield [("    ", ""), (f"✗ {v.invariant}", "red bold"), (f": {v.message}", "red")]
    yield []


def _violation_text(v: ViolationNote, error: str | None) -> str:
    """A violation shown under its line: the line already shows the save and its error."""
    if v.at_seq and v.expected and v.actual:  # found at this very line
        return f"expected {v.expected}, actual {v.actual}"
    if error and error in v.message:
        return v.message.replace(error, "…")
    return v.message


def _conversation_header(conv: ConversationTimeline) -> list[Segment]:
    turns = sum(1 for t in conv.turns.values() if t.outcome != "refused")
    raced = sum(1 for e in conv.entries if e.event == "profile.switched" and e.severity == "warn")
    parts = [f"conversation {conv.conv_id}"]
    if conv.session_id:
        parts.append(f"session {conv.session_id}")
    parts.append(f"{turns} turn{'s' if turns != 1 else ''}")
    refused = len(conv.turns) - turns
    if refused:
        parts.append(f"{refused} refused")
    switches = f"{conv.switches} switch{'es' if conv.switches != 1 else ''}"
    if raced:
        switches += f" ({raced} in flight)"
    parts.append(switches)
    out: list[Segment] = [(" · ".join(parts), "bold")]
    if conv.violation_count:
        n = conv.violation_count
        out.append((f" · ✗ {n} violation{'s' if n != 1 else ''}", "bold red"))
    return out


# -- the summary --------------------------------------------------------------------------


def _cell(value: Any, style: str = "") -> Text:
    """A table cell: the value as text, escaped, never read as rich markup."""
    return Text(printable(str(value)), style=style)


def print_summary(summary: Summary, out: IO[str], color: bool, width: int | None = None) -> None:
    """The summary as rich tables: violations first, then events, runtimes, conversations.

    ``width`` is the line width (default: the terminal's when colouring one, else 160).
    """
    console = Console(
        file=out,
        force_terminal=color,
        no_color=not color,
        highlight=False,
        markup=False,
        emoji=False,
        width=width or (None if color and out.isatty() else 160),
    )
    n = summary.violation_count
    if n:
        by = ", ".join(f"{k} {v}" for k, v in summary.violations_by_invariant.most_common())
        console.print(
            Text.assemble(
                (f"✗ {n} invariant violation{'s' if n != 1 else ''}", "bold red"),
                f" ({printable(by)})",
            )
        )
        rows = [
            tuple(
                printable(x)
                for x in (
                    str(v.get("conv_id") or ""),
                    str(v.get("turn_id") or "")[:8],
                    str(v.get("phase") or ""),
                    str(v.get("invariant") or ""),
                    str(v.get("expected") or ""),
                    str(v.get("actual") or ""),
                )
            )
            for v in summary.violations
        ]
        names = ("conversation", "turn", "phase", "invariant", "expected", "actual")
        widths = [max([len(name)] + [len(r[i]) for r in rows]) for i, name in enumerate(names)]
        room = console.width - sum(widths) - 3 * len(widths) - 4  # borders and padding
        table = Table(
            *(Column(n, no_wrap=True, min_width=w) for n, w in zip(names, widths, strict=True)),
            Column("message", overflow="ellipsis", no_wrap=True, max_width=max(room, 20)),
        )
        for row, v in zip(rows, summary.violations, strict=True):
            table.add_row(
                *map(Text, row[:3]),
                Text(row[3], style="red"),
                *map(Text, row[4:]),
                _cell(v.get("message") or ""),
            )
        console.print(table)
        if n > len(summary.violations):
            console.print(f"  … and {n - len(summary.violations)} more (use --json for all)")
    else:
        console.print(Text("no invariant violations", style="green"))
    if summary.expectation_failure_count:
        k = summary.expectation_failure_count
        console.print(Text(f"✗ {k} failed expectation{'s' if k != 1 else ''}", style="bold red"))
        for f in summary.expectation_failures:
            console.print(
                _cell(
                    f"  {f.get('scenario')} step {f.get('step')} (line {f.get('line')}): "
                    f"{f.get('message')}"
                )
            )
    if summary.runs:
        failed = f", {summary.failed_runs} failed" if summary.failed_runs else ""
        names_ = f": {', '.join(summary.failed_run_names)}" if summary.failed_run_names else ""
        console.print(_cell(f"runs: {summary.runs}{failed}{names_}"))
    console.print(
        f"{summary.lines} lines read, {summary.events} events selected, "
        f"{summary.malformed} malformed"
    )
    events = Table("event", Column("count", justify="right"), title="events")
    for name in [*CATALOGUE, *sorted(set(summary.by_event) - set(CATALOGUE))]:
        count = summary.by_event.get(name, 0)
        if count:
            style = "red" if name in ("invariant.violated", "expectation.failed") else ""
            label = _cell(name, style)
            if name not in CATALOGUE:
                label.append(" (not in the catalogue)", style="yellow")
            events.add_row(label, str(count))
    console.print(events)
    if summary.runtimes:
        numbers = ("turns", "saves stored", "saves failed", "switched to")
        runtimes = Table(
            "runtime", *(Column(n, justify="right") for n in numbers), title="runtimes"
        )
        for key, c in sorted(summary.runtimes.items()):
            runtimes.add_row(
                _cell(key), str(c.turns), str(c.saves), str(c.failed_saves), str(c.switched_to)
            )
        console.print(runtimes)
    if summary.conversations:
        numbers = ("events", "turns", "switches", "in flight", "saves", "failed", "violations")
        convs = Table(
            "conversation",
            "session",
            *(Column(n, justify="right") for n in (*numbers, "last t")),
            title="conversations",
        )
        items = sorted(summary.conversations.items(), key=lambda kv: (-kv[1].violations, kv[0]))
        for conv_id, c in items[:MAX_SUMMARY_CONVERSATIONS]:
            convs.add_row(
                _cell(conv_id),
                _cell(c.session_id),
                str(c.events),
                str(c.turns),
                str(c.switches),
                str(c.inflight_switches),
                str(c.saves),
                str(c.failed_saves),
                Text(str(c.violations), style="red") if c.violations else "0",
                f"{c.last_t_ms}ms",
            )
        console.print(convs)
        if len(items) > MAX_SUMMARY_CONVERSATIONS:
            more = len(items) - MAX_SUMMARY_CONVERSATIONS
            console.print(f"  … and {more} more conversations (use --json for all)")
