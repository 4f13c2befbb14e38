"""What the invariant checkers read and report: a run's state and one violation.

Apart from :mod:`sim.scenario.invariants` so that checker modules of their own
(:mod:`sim.scenario.lifecycle_invariants`, ...) can use them without an import cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import attrs

from persisters.model import ConversationRecord, TurnRecord, TurnSnapshot
from persisters.readpath import ReadPath
from sim.runtime.profiles import ProfileRegistry


@attrs.frozen
class Violation:
    """One broken rule, with everything needed to find it again."""

    invariant: str
    conv_id: str
    message: str
    turn_id: str = ""
    phase: str = ""
    expected: str = ""
    actual: str = ""
    seq: int = 0  # the history event that shows it (0: found in the final state)
    cause_seq: int = 0  # the history event that caused it, when known (e.g. a switch)

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class RunState:
    """What the checkers read: the history and the store's final state."""

    events: list[dict[str, Any]]
    snapshots: list[TurnSnapshot]
    turns: list[TurnRecord]
    conversations: list[ConversationRecord]
    registry: ProfileRegistry
    expected_failures: frozenset[int] = frozenset()
    read_path: ReadPath = attrs.field(factory=ReadPath)


Checker = Callable[[RunState], Iterable[Violation]]
