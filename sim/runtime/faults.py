"""Named fault points (FoundationDB's BUGGIFY, made explicit): product code asks the plan
whether a point fires; only a simulation's plan ever says yes.

Points: ``store.save`` (either pipeline), ``engine.infer`` (the inference itself fails),
``actor.crash`` (a conversation actor crashes when it next takes a command),
``history.load`` (loading a ``history: true`` conversation's history from the store).
"""

from __future__ import annotations

from typing import Any

import attrs

from persisters.errors import PermanentStoreError, TransientStoreError, TurnsimError

POINTS = ("store.save", "engine.infer", "actor.crash", "history.load")
KINDS = ("transient", "permanent")


class InjectedInferenceError(TurnsimError):
    """The fake engine failed on purpose (fault point ``engine.infer``)."""


class InjectedCrash(TurnsimError):
    """A conversation actor crashed on purpose (fault point ``actor.crash``)."""


@attrs.define
class FaultRule:
    """Fire at ``point`` for matching saves/phases, ``times`` times, after ``skip`` matches."""

    point: str = attrs.field(validator=attrs.validators.in_(POINTS))
    kind: str = attrs.field(default="permanent", validator=attrs.validators.in_(KINDS))
    times: int = 1
    skip: int = 0
    conv_id: str | None = None
    phase: str | None = None
    pipeline: str | None = None
    fired: int = 0
    seen: int = 0

    def matches(self, point: str, ctx: dict[str, Any]) -> bool:
        return (
            self.point == point
            and (self.conv_id is None or ctx.get("conv_id") == self.conv_id)
            and (self.phase is None or ctx.get("phase") == self.phase)
            and (self.pipeline is None or ctx.get("pipeline") == self.pipeline)
        )


class FaultPlan:
    """The faults of one run, consulted in a fixed order (deterministic)."""

    def __init__(self) -> None:
        self.rules: list[FaultRule] = []
        self.on_fire: Any = None  # callback(rule, ctx) for the recorder

    def add(self, rule: FaultRule) -> None:
        self.rules.append(rule)

    def check(self, point: str, **ctx: Any) -> None:
        """Raise the injected error if a rule fires at this point."""
        for rule in self.rules:
            if not rule.matches(point, ctx):
                continue
            rule.seen += 1
            if rule.seen <= rule.skip or rule.fired >= rule.times:
                continue
            rule.fired += 1
            if self.on_fire is not None:
                self.on_fire(rule, ctx)
            raise _error(rule, point, ctx)


def _error(rule: FaultRule, point: str, ctx: dict[str, Any]) -> Exception:
    where = ", ".join(f"{k}={v}" for k, v in sorted(ctx.items()) if v is not None)
    text = f"injected {rule.kind} fault at {point} ({where}), firing {rule.fired}/{rule.times}"
    if point in ("store.save", "history.load"):
        return (TransientStoreError if rule.kind == "transient" else PermanentStoreError)(text)
    if point == "engine.infer":
        return InjectedInferenceError(text)
    return InjectedCrash(text)
