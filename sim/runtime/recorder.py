"""The run's history: every observable thing, in order, as a structlog event.

The :class:`Recorder` gives each event a sequence number and the virtual time, keeps it in
memory for the invariant checkers, and emits it through structlog with the run's bound
context (``scenario``, ``seed``). Event names, levels and meanings come from the one
catalogue, :mod:`sim.events`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import structlog

from sim.events import CATALOGUE


def _drop(_logger: Any, _method: str, _event: dict[str, Any]) -> Any:
    raise structlog.DropEvent


#: The recorder logs at info and warning only: below CRITICAL those calls are no-ops
#: (no processor chain per event); anything that still gets through is dropped.
_Silent = structlog.make_filtering_bound_logger(logging.CRITICAL)


class Recorder:
    """Ordered history of a run, mirrored to structlog."""

    def __init__(
        self,
        *,
        clock: Callable[[], int],
        scenario: str = "",
        seed: int = 0,
        keep: bool = True,
        logger: Any = None,
    ) -> None:
        self._clock = clock
        self._keep = keep
        self.events: list[dict[str, Any]] = []
        self.seq = 0
        self.closed = False
        if logger is None and not structlog.is_configured():
            # A library user who configured no logging gets no printed events (the
            # history is still kept); the CLI and tests always configure.
            logger = structlog.wrap_logger(None, processors=[_drop], wrapper_class=_Silent)
        self._log = (logger or structlog.get_logger("turnsim.sim")).bind(
            scenario=scenario, seed=seed
        )
        self.counts: dict[str, int] = {}

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        """Record one event; ``event`` must be a catalogue name."""
        spec = CATALOGUE.get(event)
        if spec is None:
            raise ValueError(f"event {event!r} is not in the catalogue (sim/events.py)")
        if self.closed:
            return {}
        self.seq += 1
        record = {"event": event, "seq": self.seq, "t_ms": self._clock(), **fields}
        if self._keep:
            self.events.append(record)
        self.counts[event] = self.counts.get(event, 0) + 1
        getattr(self._log, spec.level)(event, seq=record["seq"], t_ms=record["t_ms"], **fields)
        return record

    def close(self) -> None:
        """Drop anything emitted after the run ended (teardown is not history)."""
        self.closed = True

    def select(self, *names: str) -> Iterator[dict[str, Any]]:
        wanted = set(names)
        return (e for e in self.events if e["event"] in wanted)
