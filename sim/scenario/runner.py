"""Running a scenario: a world and a director, then the invariant checks, then the result.

:func:`run_scenario` is what ``turnsim run``, the pytest plugin and ``turnsim explore``
call. Conversations are stored under ``<scenario name>.<conversation name>`` so several
scenarios can share one database.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio
import anyio.to_thread

from persisters.errors import StoreError
from persisters.model import MAX_LIMIT, TurnQuery
from persisters.normalized_schema import NORMALIZED
from persisters.schema import TURNSIM
from persisters.sqlite_file import admit, conversations_named
from persisters.sqlite_open import refuse_tables_of_other_layout
from persisters.store import TurnStore
from persisters.stores import SQLITE, StoreSpec
from sim.runtime.kernel import SimulationStalled
from sim.runtime.variants import build
from sim.runtime.world import World
from sim.scenario.director import Director
from sim.scenario.invariants import INVARIANTS, RunState, Violation, check_all
from sim.scenario.model import Scenario
from sim.scenario.result import Failure, ScenarioResult

#: Makes a fresh, empty store: ``await fresh(on_conflict=policy)``.
FreshStore = Callable[..., Awaitable[TurnStore]]


async def collect_state(world: World, director: Director) -> RunState:
    """Read the store's final state for the scenario's conversations."""
    store = world.raw_store
    snapshots, turns, conversations = [], [], []
    for name in director.convs:
        conv_id = director.conv_id(name)
        snapshots.extend(await store.list(TurnQuery(conv_id=conv_id, limit=MAX_LIMIT)))
        turns.extend(await store.list_turns(conv_id))
        record = await store.conversations.get(conv_id)
        if record is not None:
            conversations.append(record)
    snapshots.sort(key=lambda s: s.snapshot_id)
    return RunState(
        events=world.recorder.events,
        snapshots=snapshots,
        turns=turns,
        conversations=conversations,
        registry=world.profiles,
        expected_failures=frozenset(director.expected_failures),
        read_path=world.build.read_path,
    )


async def run_scenario(
    scenario: Scenario,
    *,
    seed: int | None = None,
    variants: Iterable[str] = (),
    db: str | os.PathLike[str] | None = None,
    store: StoreSpec = SQLITE,
    fresh: FreshStore | None = None,
) -> ScenarioResult:
    """Run one scenario on the store ``store`` names and check every invariant.

    The default is an embedded SQLite file: ``db`` keeps the database at that path (shared
    by several scenarios is fine); by default a temporary file is used and removed. On a
    server (``postgresql://``, ``mysql://``) ``db`` names the schema or database that keeps
    the run; by default a scratch one is used and dropped. ``fresh`` (with ``db`` None)
    replaces how the fresh store is made: ``await fresh(on_conflict=policy)``, closed
    after the run (``turnsim conformance`` hands out pooled server namespaces). The result
    (and the log) does not depend on the store: ``tests/cli/test_logs_across_stores.py``
    holds every store to the same bytes.
    """
    seed = scenario.seed if seed is None else seed
    chosen = build(variants)
    started = time.perf_counter()
    if db is None and not store.keeps_data:  # the memory store: no file to make
        opened = await store.open(on_conflict=chosen.on_conflict)
        try:
            return await _run(scenario, seed, chosen, opened, None, started)
        finally:
            await opened.close()
    with tempfile.TemporaryDirectory(prefix="turnsim-") as tmp:
        if fresh is not None and db is None:
            opened = await fresh(on_conflict=chosen.on_conflict)
        elif store.kind in ("sqlite", "normalized"):
            path = os.fspath(db) if db is not None else os.path.join(tmp, "run.db")
            existing = db is not None and os.path.exists(path) and os.path.getsize(path) > 0
            if existing:  # refusals come before anything is written (a migration included)
                admitted = await anyio.to_thread.run_sync(admit, path, "write")
                layout = NORMALIZED if store.kind == "normalized" else TURNSIM
                refuse_tables_of_other_layout(admitted.tables, path, layout)
                _refuse_taken(
                    path,
                    scenario,
                    await anyio.to_thread.run_sync(conversations_named, path, f"{scenario.name}."),
                )
            opened = await store.open(path=path, on_conflict=chosen.on_conflict)
        else:  # a server keeps the run in namespace `db` (none: a scratch one), others nowhere
            opened = await store.open(path=db, on_conflict=chosen.on_conflict)
        kept = os.fspath(db) if db is not None else None
        try:
            claim = getattr(opened, "claim_scenario", None)
            if claim is not None:  # one transaction: a second run of it on the file refuses
                await claim(scenario.name, uuid.uuid4().hex)
            return await _run(scenario, seed, chosen, opened, kept, started)
        finally:
            await opened.close()


def _refuse_taken(db: str | None, scenario: Scenario, taken: list[str]) -> None:
    if taken:
        raise StoreError(
            f"{db} already holds conversations of scenario {scenario.name!r} "
            f"({', '.join(taken[:3])}); use a new --db or delete it"
        )


async def _run(
    scenario: Scenario,
    seed: int,
    chosen: Any,
    store: TurnStore,
    db: str | None,
    started: float,
) -> ScenarioResult:
    prefix = f"{scenario.name}."
    taken = [c.conv_id for c in await store.conversations.list() if c.conv_id.startswith(prefix)]
    _refuse_taken(db, scenario, taken)
    world = World(
        seed=seed,
        store=store,
        profiles=scenario.registry(),
        variants=chosen,
        scenario=scenario.name,
        retry_attempts=scenario.retry_attempts,
        retry_backoff_ms=scenario.retry_backoff_ms,
        store_latency_ms=scenario.store_latency_ms,
    )
    director = Director(world, scenario)
    world.recorder.emit("scenario.started", path=scenario.path, variants=list(chosen.variants))
    failures: list[Failure] = []
    try:
        await world.run(director.run)
    except SimulationStalled as exc:
        failures.append(Failure("error", "stalled", str(exc)))
    except Exception as exc:  # an actor that crashed for good, a store that broke
        failures.append(Failure("error", type(exc).__name__, str(exc)))
    world.recorder.closed = False  # the checks below belong to the history too
    failures = director.failures + failures
    state = await collect_state(world, director)
    for v in check_all(state):
        failures.append(_from_violation(v, director, world.recorder.events))
        world.recorder.emit(
            "invariant.violated",
            invariant=v.invariant,
            conv_id=v.conv_id,
            turn_id=v.turn_id,
            phase=v.phase,
            expected=v.expected,
            actual=v.actual,
            message=v.message,
            at_seq=v.seq,
        )
    switches = world.recorder.counts.get("profile.switched", 0)
    world.recorder.emit(
        "scenario.finished",
        result="pass" if not failures else "fail",
        turns=world.recorder.counts.get("inference.started", 0),
        switches=switches,
        failures=len(failures),
    )
    world.recorder.close()
    return ScenarioResult(
        scenario=scenario.name,
        path=scenario.path,
        seed=seed,
        variants=chosen.variants,
        failures=failures,
        turns=world.recorder.counts.get("inference.started", 0),
        switches=switches,
        checks=director.checks + len(INVARIANTS),
        virtual_ms=world.now_ms(),
        wall_s=time.perf_counter() - started,
        events=world.recorder.events,
        db=db,
    )


def _from_violation(v: Violation, director: Director, events: list[dict[str, Any]]) -> Failure:
    located = None
    if v.cause_seq:
        cause = events[v.cause_seq - 1] if v.cause_seq <= len(events) else {}
        index = cause.get("step")
        located = next((s for s in director.scenario.steps if s.index == index), None)
        located = located or director.step_for_seq(v.cause_seq)
    elif v.seq:
        located = director.step_for_seq(v.seq)
    return Failure(
        "invariant",
        v.invariant,
        v.message,
        conv_id=v.conv_id,
        turn_id=v.turn_id,
        phase=v.phase,
        expected=v.expected,
        actual=v.actual,
        step=located.index if located else 0,
        where=f"{located.where} ({located.kind})" if located else "",
    )
