"""The summary of a log: counters per event, level, runtime and conversation, with the
first violations and expectation failures kept in detail. :class:`SummaryBuilder` keeps no
event, so a log of any length is summarized in the memory its counters take."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import attrs

from sim.events import SAVE_LOST, SAVED
from sim.logs.fields import text_of, time_of

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
        s.by_level[text_of(event.get("level")) or "-"] += 1
        if self._catalogue and name not in self._catalogue:
            s.unknown_events[name] += 1
        conv_id = text_of(event.get("conv_id"))
        conv = None
        if conv_id:
            conv = s.conversations.get(conv_id)
            if conv is None:
                conv = s.conversations[conv_id] = ConversationCounts(
                    scenario=text_of(event.get("scenario"))
                )
            conv.events += 1
            conv.session_id = text_of(event.get("session_id")) or conv.session_id
            t = time_of(event)
            if t is not None and t > conv.last_t_ms:
                conv.last_t_ms = t
        runtime = text_of(event.get("runtime_key"))
        if name == "scenario.finished":
            s.runs += 1
            if event.get("result") == "fail":
                s.failed_runs += 1
                if len(s.failed_run_names) < SUMMARY_DETAIL:
                    s.failed_run_names.append(
                        f"{text_of(event.get('scenario'))} seed {event.get('seed')}"
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
            carried = text_of(event.get("carried_runtime_key")) or runtime
            if carried:
                self._runtime(carried).failed_saves += 1
            if conv:
                conv.failed_saves += 1
        elif name == "invariant.violated":
            s.violations_by_invariant[text_of(event.get("invariant")) or "?"] += 1
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
    """The summary of ``events``; names not in ``catalogue`` (if given) count as unknown."""
    builder = SummaryBuilder(catalogue)
    for event in events:
        builder.add(event)
    return builder.summary
