"""Selecting events: the filter of ``turnsim logs`` (:class:`LogFilter`) as a predicate
over events in log order (:class:`Selector`), which remembers only the ids of the turns it
was asked for."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

import attrs

from sim.logs.fields import LEVEL_RANK, text_of, time_of

#: ``--turn`` matches a turn or inference id by prefix from this many characters on.
MIN_ID_PREFIX = 4
#: Fields that may hold a runtime key (``--runtime`` looks at all of them).
RUNTIME_FIELDS = (
    "runtime_key",
    "carried_runtime_key",
    "previous_runtime_key",
    "inflight_runtime_key",
)


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
            fnmatchcase(text_of(event.get("scenario")), p) for p in spec.scenarios
        ):
            return False
        if spec.convs and not any(
            conv_matches(text_of(event.get("conv_id")), p) for p in spec.convs
        ):
            return False
        if spec.since_ms is not None or spec.until_ms is not None:
            t = time_of(event)
            if t is None:
                return False
            if spec.since_ms is not None and t < spec.since_ms:
                return False
            if spec.until_ms is not None and t > spec.until_ms:
                return False
        if self._min_level and LEVEL_RANK.get(text_of(event.get("level")), 0) < self._min_level:
            return False
        if spec.runtimes and not self._runtime(event):
            return False
        return not spec.turns or self._turn(event)

    def _runtime(self, event: dict[str, Any]) -> bool:
        values = [text_of(event.get(f)) for f in RUNTIME_FIELDS]
        if event["event"] == "invariant.violated":
            values += [text_of(event.get("expected")), text_of(event.get("actual"))]
        return any(runtime_matches(v, p) for v in values if v for p in self.spec.runtimes)

    def _turn(self, event: dict[str, Any]) -> bool:
        turn_id = text_of(event.get("turn_id"))
        inference_id = text_of(event.get("inference_id"))
        if (turn_id and turn_id in self._turn_ids) or (
            inference_id and inference_id in self._inference_ids
        ):
            return True
        inflight = text_of(event.get("inflight_turn_id"))
        if inflight and inflight in self._turn_ids:
            return True
        for wanted in self.spec.turns:
            if (
                text_of(event.get("turn")) == wanted
                or text_of(event.get("inflight_turn")) == wanted
                or _id_matches(turn_id, wanted)
                or _id_matches(inference_id, wanted)
                or _id_matches(text_of(event.get("inflight_turn_id")), wanted)
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
