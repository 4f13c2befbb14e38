"""The run's history: every observable thing, in order, as a structlog event.

The :class:`Recorder` gives each event a sequence number and the virtual time, keeps it in
memory for the invariant checkers, and emits it through structlog with the run's bound
context (``scenario``, ``seed``). The catalogue below is the one list of event names;
``docs/logs.md`` documents it and a test checks every name appears in the shipped suite.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import structlog

#: Event name -> what it means. Fields are documented in docs/logs.md.
CATALOGUE: dict[str, str] = {
    "scenario.started": "a scenario run began (file, variants)",
    "scenario.finished": "a scenario run ended (result, counts)",
    "step.started": "the director began a scenario step",
    "conversation.started": "a conversation actor started (or restarted) with its profile",
    "conversation.stopped": "a conversation actor stopped",
    "conversation.crashed": "a conversation actor crashed; its supervisor decides",
    "conversation.restarted": "a supervisor restarted a crashed actor from the store",
    "profile.switched": "the conversation's current runtime pointer changed",
    "profile.switch_refused": "a switch named a profile the registry does not know",
    "prompt.queued": "a prompt entered the conversation's queue",
    "inference.started": "an inference began; its runtime is bound here",
    "inference.refused": "an inference could not start (no runtime)",
    "inference.cancel_requested": "a cancellation of the in-flight inference was requested",
    "inference.finished": "an inference ended (completed, failed or cancelled)",
    "snapshot.saved": "the snapshot hook stored a phase snapshot",
    "snapshot.save_retry": "a snapshot save failed transiently and will be retried",
    "snapshot.save_failed": "a snapshot save failed for good; surfaced as a failure",
    "snapshot.save_error_swallowed": "a snapshot save failed and was only logged (bug variant)",
    "turn.persisted": "the final persister stored the finished turn",
    "turn.persist_retry": "a final save failed transiently and will be retried",
    "turn.persist_failed": "a final save failed for good; surfaced as a failure",
    "conversation.index_save_failed": "a conversation index write failed; surfaced",
    "turn.resaved": "a second writer re-saved an existing turn",
    "turn.resave_refused": "the store refused a second writer's conflicting save",
    "fault.injected": "a named fault point fired",
    "expectation.failed": "an expect_* step did not hold",
    "invariant.violated": "an invariant checker found a violation",
}

#: Context fields an event may carry, in the order the console renderer shows them.
CONTEXT_FIELDS: tuple[str, ...] = (
    "conv_id",
    "session_id",
    "turn",
    "turn_id",
    "phase",
    "runtime_key",
    "inference_id",
    "profile",
)


def _drop(_logger: Any, _method: str, _event: dict[str, Any]) -> Any:
    raise structlog.DropEvent


#: The recorder logs at info and warning only: below CRITICAL those calls are no-ops
#: (no processor chain per event); anything that still gets through is dropped.
_Silent = structlog.make_filtering_bound_logger(logging.CRITICAL)


_WARNING_SUFFIXES = ("failed", "violated", "swallowed", "refused", "crashed")


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
        if event not in CATALOGUE:
            raise ValueError(f"event {event!r} is not in the catalogue (sim/recorder.py)")
        if self.closed:
            return {}
        self.seq += 1
        record = {"event": event, "seq": self.seq, "t_ms": self._clock(), **fields}
        if self._keep:
            self.events.append(record)
        self.counts[event] = self.counts.get(event, 0) + 1
        level = "warning" if event.endswith(_WARNING_SUFFIXES) else "info"
        getattr(self._log, level)(event, seq=record["seq"], t_ms=record["t_ms"], **fields)
        return record

    def close(self) -> None:
        """Drop anything emitted after the run ended (teardown is not history)."""
        self.closed = True

    def select(self, *names: str) -> Iterator[dict[str, Any]]:
        wanted = set(names)
        return (e for e in self.events if e["event"] in wanted)
