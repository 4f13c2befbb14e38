"""The machinery of the contract suite: checks, the rules they prove, fresh stores, helpers.

A check is a plain coroutine ``check(make)`` (or ``check(make, case)`` for a check with
cases) registered with :func:`check` under one rule of :data:`RULES`. It gets a
:data:`StoreMaker` and calls it for each fresh, empty store it needs; it fails by raising
:class:`AssertionError` and skips by raising :class:`Skip`. Nothing here needs pytest:
``persisters.testing`` turns every check into a pytest test, and ``turnsim conformance``
runs them directly (:func:`run_check`).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import re
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from persisters.model import Turn, TurnQuery
from persisters.store import ConflictPolicy, TurnStore, refuse_rewrite

#: rule -> what a store that passes its checks does.
RULES: dict[str, str] = {
    "protocol": (
        "implements every member of TurnStore, ConversationIndex and (if it has one) WriteQueue"
    ),
    "write-once": (
        "a turn's recorded runtime_key / inference_id never change (rule 4); a conflicting "
        "save is refused and changes nothing"
    ),
    "empty-runtime": (
        "a new turn without a runtime (rule 8), and unusable arguments, are refused and "
        "write nothing"
    ),
    "append-only": (
        "every save appends a snapshot and none is replaced (two of one phase in one "
        "millisecond both stay)"
    ),
    "projection": "explicit values win; the payload's metadata fills what is empty (rule 5)",
    "pointer": (
        "the conversation pointer is the current runtime, kept apart from turn history (rule 2)"
    ),
    "filters-ordering": (
        "list filters, newest-first order (later save first on ties), get_turn, list_turns, "
        "turn_counts"
    ),
    "concurrency": (
        "concurrent saves all land in order, refusals fail alone, group commit gives what "
        "awaited calls give"
    ),
    "read-only": "make_read_only refuses every later write and keeps every read",
}

#: ``await make()`` -> a fresh, empty store; ``make(on_conflict=new_value_wins)`` for one
#: with another conflict policy.
StoreMaker = Callable[..., Awaitable[Any]]
CheckFn = Callable[..., Awaitable[None]]


class Skip(Exception):  # named for what it does, as pytest's skip
    """Raised by a check that does not apply to this store (the reason says why)."""


@attrs.frozen
class Check:
    """One executable clause of the contract."""

    name: str
    rule: str
    fn: CheckFn
    doc: str
    #: (id, value) pairs: the check runs once per case, each with fresh stores.
    cases: tuple[tuple[str, Any], ...] = ()

    @property
    def where(self) -> str:
        """``module:line`` of the check's code."""
        code = self.fn.__code__
        return f"{Path(code.co_filename).name}:{code.co_firstlineno}"


#: Every check, in registration order (the submodules register on import).
CHECKS: list[Check] = []


def check(rule: str, cases: Sequence[tuple[str, Any]] = ()) -> Callable[[CheckFn], CheckFn]:
    """Register the decorated coroutine as a check of ``rule``."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}")

    def register(fn: CheckFn) -> CheckFn:
        name = fn.__name__.removeprefix("check_")
        if any(c.name == name for c in CHECKS):
            raise ValueError(f"two checks named {name!r}")
        CHECKS.append(Check(name, rule, fn, inspect.getdoc(fn) or "", tuple(cases)))
        return fn

    return register


@attrs.frozen
class Outcome:
    """What one run of one check (one case) gave: ``passed``, ``failed`` or ``skipped``."""

    check: str
    case: str
    rule: str
    status: str
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _accepts_on_conflict(factory: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return True
    return "on_conflict" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


@contextlib.asynccontextmanager
async def store_maker(factory: Callable[..., Any]) -> AsyncIterator[StoreMaker]:
    """A :data:`StoreMaker` over a user's ``factory`` that closes every store it made.

    ``factory(on_conflict=policy)`` returns a fresh, empty store, or an awaitable of one.
    A factory without an ``on_conflict`` parameter makes only write-once stores; a check
    that needs another policy is then skipped.
    """
    opened: list[Any] = []
    takes_policy = _accepts_on_conflict(factory)

    async def make(*, on_conflict: ConflictPolicy = refuse_rewrite) -> Any:
        if takes_policy:
            made = factory(on_conflict=on_conflict)
        elif on_conflict is refuse_rewrite:
            made = factory()
        else:
            raise Skip("the store factory takes no on_conflict: only write-once is checked")
        store = await made if inspect.isawaitable(made) else made
        opened.append(store)
        return store

    try:
        yield make
    finally:
        for store in opened:
            await store.close()


def _failure_text(exc: BaseException) -> str:
    """One line: the failed assertion's source line (in the contract), or the error."""
    if isinstance(exc, AssertionError):
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if "contract" in f.filename]
        # the check's own line, not the helper (``raises``) that failed inside it
        own = [f for f in frames if Path(f.filename).name != "base.py"]
        where = (own or frames or [None])[-1]
        detail = str(exc) or (where.line if where else "") or "assertion failed"
        place = f"{Path(where.filename).name}:{where.lineno}: " if where else ""
        return f"{place}{detail}"
    return f"{type(exc).__name__}: {exc}"


async def run_check(
    one: Check, factory: Callable[..., Any], case: tuple[str, Any] | None = None
) -> Outcome:
    """Run one check (one case) against fresh stores of ``factory``; never raises for
    the check's own failure (that is the outcome)."""
    case_id = case[0] if case else ""
    try:
        async with store_maker(factory) as make:
            if case is None:
                await one.fn(make)
            else:
                await one.fn(make, case[1])
    except Skip as exc:
        return Outcome(one.name, case_id, one.rule, "skipped", str(exc))
    except Exception as exc:
        return Outcome(one.name, case_id, one.rule, "failed", _failure_text(exc))
    return Outcome(one.name, case_id, one.rule, "passed")


# ---------------------------------------------------------------------------------------
# helpers the checks share


class Raised:
    """What :func:`raises` caught (``value``)."""

    value: Any = None


@contextlib.contextmanager
def raises(kind: type[BaseException], match: str | None = None) -> Iterator[Raised]:
    """Like ``pytest.raises``: the block must raise ``kind`` (its text matching ``match``)."""
    caught = Raised()
    try:
        yield caught
    except kind as exc:
        if match is not None and not re.search(match, str(exc)):
            raise AssertionError(
                f"{type(exc).__name__} {str(exc)!r} does not match {match!r}"
            ) from exc
        caught.value = exc
        return
    raise AssertionError(f"did not raise {kind.__name__}")


async def fresh(make: StoreMaker, **kwargs: Any) -> TurnStore:
    """One fresh store (shorthand for checks that need only one)."""
    return await make(**kwargs)


def payload(turn_id: str, marker: object = None, **metadata: Any) -> str:
    """A serialized turn whose data carries ``marker`` so each snapshot is recognisable."""
    return Turn(id=turn_id, metadata=metadata, data={"marker": marker}).serialize()


def marker_of(snapshot: Any) -> Any:
    return json.loads(snapshot.payload)["data"]["marker"]


def row(snapshot: Any) -> tuple[Any, ...]:
    """A snapshot without its implementation-specific snapshot id."""
    return (
        snapshot.conv_id,
        snapshot.session_id,
        snapshot.turn_id,
        snapshot.phase,
        snapshot.runtime_key,
        snapshot.inference_id,
        snapshot.created_at_ms,
        snapshot.payload,
    )


async def everything(store: Any) -> list[Any]:
    return list(await store.list(TurnQuery(limit=10_000)))
