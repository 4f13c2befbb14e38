"""The swimlane model: what a picture of a run shows, as plain values (no drawing).

One :class:`Lane` per conversation of a :class:`~sim.logs.timeline.RunTimeline`, in the
order the run met them, holding:

* a :class:`Bar` per inference, from ``inference.started`` to ``inference.finished`` (to
  the last event of the turn when it never finished), with the runtime **bound when it
  started** (``runtime_key`` of ``inference.started``): the colour of the bar;
* a :class:`Switch` per ``profile.switched``, ``inflight`` when an inference was running;
* a :class:`Save` per stored save (``snapshot.saved``, ``turn.persisted``,
  ``turn.resaved``) with the runtime it stored, ``wrong`` when that is not the bar's;
* a :class:`Failure` per save that did not store: refused or failed for good (``kind``
  ``refused``, ``failed``, ``swallowed``) or failed and retried (``retry``).

:mod:`sim.logs.plot` draws it; tests read it. Times are virtual milliseconds (``t_ms``);
an event without one is left out.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from sim.events import RETRIED, SAVE_LOST, SAVED
from sim.logs.timeline import ConversationTimeline, RunTimeline, TurnInfo


@attrs.frozen
class Bar:
    """One inference of a conversation."""

    label: str  # the scenario's turn label (t2), else the short turn id
    turn_id: str
    runtime: str  # bound when the inference started ('' when its start is not in the log)
    start_ms: int
    end_ms: int
    outcome: str  # completed | failed | cancelled | refused | '' (never finished)
    bad: bool  # a save carried another runtime, or an invariant names this turn


@attrs.frozen
class Switch:
    """A profile switch: the pointer moved from ``previous`` to ``runtime``."""

    t_ms: int
    previous: str
    runtime: str
    inflight: bool  # an inference of the conversation was running


@attrs.frozen
class Save:
    """A save that stored: its phase (``final`` for the final persister) and runtime."""

    t_ms: int
    phase: str
    runtime: str
    event: str
    wrong: bool  # the stored runtime is not the one its inference started with


@attrs.frozen
class Failure:
    """A save that did not store."""

    t_ms: int
    phase: str
    runtime: str  # what the save carried
    event: str
    kind: str  # refused | failed | swallowed | retry


@attrs.frozen
class Lane:
    """One conversation of the run."""

    conv_id: str
    session_id: str
    bars: tuple[Bar, ...]
    switches: tuple[Switch, ...]
    saves: tuple[Save, ...]
    failures: tuple[Failure, ...]


@attrs.frozen
class Swimlanes:
    """One run's lanes, with what its title says."""

    scenario: str
    seed: object
    variants: tuple[str, ...]
    result: str  # pass | fail | '' (the log ends before scenario.finished)
    lanes: tuple[Lane, ...]

    @property
    def end_ms(self) -> int:
        """The last time any lane shows (0 for an empty run)."""
        times = [0]
        for lane in self.lanes:
            times += [b.end_ms for b in lane.bars]
            times += [s.t_ms for s in lane.switches]
            times += [s.t_ms for s in lane.saves]
            times += [f.t_ms for f in lane.failures]
        return max(times)

    @property
    def runtimes(self) -> list[str]:
        """Every runtime the picture colours, sorted."""
        found: set[str] = set()
        for lane in self.lanes:
            found.update(b.runtime for b in lane.bars)
            found.update(s.runtime for s in lane.saves)
            found.update(s.runtime for s in lane.switches)
            found.update(s.previous for s in lane.switches if s.previous)
        return sorted(found)

    @property
    def title(self) -> str:
        variants = f" [{'+'.join(self.variants)}]" if self.variants else ""
        seed = f" seed {self.seed}" if self.seed is not None else ""
        result = {"pass": "PASS", "fail": "FAIL"}.get(self.result, "unfinished")
        return f"{self.scenario or '(no scenario)'}{variants}{seed}: {result}"


_FAILURE_KIND = {
    "turn.resave_refused": "refused",
    "snapshot.save_error_swallowed": "swallowed",
    **{name: "retry" for name in RETRIED},
}


def _lane(conv: ConversationTimeline) -> Lane:
    ends: dict[int, int] = {}  # id(turn) -> when it finished, or its last event
    switches: list[Switch] = []
    saves: list[Save] = []
    failures: list[Failure] = []
    for entry in conv.entries:
        t = entry.t_ms
        if t is None:
            continue
        turn = entry.turn
        if turn is not None and (entry.inside or entry.event == "inference.finished"):
            ends[id(turn)] = max(ends.get(id(turn), t), t)
        data = entry.data
        if entry.event == "profile.switched":
            inflight = bool(data.get("inflight_runtime_key") or data.get("inflight_turn_id"))
            switches.append(
                Switch(
                    t,
                    str(data.get("previous_runtime_key", "")),
                    str(data.get("runtime_key", "")),
                    inflight,
                )
            )
        elif entry.event in SAVED:
            runtime = str(data.get("runtime_key", ""))
            bound = turn.runtime_key if turn is not None else ""
            wrong = bool(bound) and runtime != bound
            saves.append(Save(t, str(data.get("phase", "")), runtime, entry.event, wrong))
        elif entry.event in SAVE_LOST or entry.event in _FAILURE_KIND:
            carried = str(data.get("carried_runtime_key") or data.get("runtime_key") or "")
            kind = _FAILURE_KIND.get(entry.event, "failed")
            failures.append(Failure(t, str(data.get("phase", "")), carried, entry.event, kind))
    bars = [_bar(turn, ends.get(id(turn))) for turn in conv.turns.values()]
    return Lane(
        conv_id=conv.conv_id,
        session_id=conv.session_id,
        bars=tuple(b for b in bars if b is not None),
        switches=tuple(switches),
        saves=tuple(saves),
        failures=tuple(failures),
    )


def _bar(turn: TurnInfo, end: int | None) -> Bar | None:
    start = turn.started_ms
    if start is None:  # its start was filtered out or is missing: nothing to anchor a bar
        return None
    return Bar(
        label=turn.label or turn.short_id or turn.inference_id[:8],
        turn_id=turn.turn_id,
        runtime=turn.runtime_key,
        start_ms=start,
        end_ms=max(start, end if end is not None else start),
        outcome=turn.outcome,
        bad=turn.bad,
    )


def swimlanes(run: RunTimeline) -> Swimlanes:
    """The picture of one run."""
    variants = tuple(str(v) for v in run.variants)
    return Swimlanes(
        scenario=run.scenario,
        seed=run.seed,
        variants=variants,
        result=run.result,
        lanes=tuple(_lane(conv) for conv in run.conversations.values()),
    )


def all_swimlanes(runs: Iterable[RunTimeline]) -> list[Swimlanes]:
    """The picture of every run that has a conversation."""
    return [swimlanes(run) for run in runs if run.conversations]
