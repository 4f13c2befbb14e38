"""Model-based testing of every TurnStore: a Hypothesis rule-based state machine.

The machine drives a real store (in memory, a SQLite file, SQLite ``:memory:``) with random
saves, conflicting rewrites, lists, point reads and, for files, close-and-reopen, and
compares every answer with a reference model written here from the rules of domain.md
(not from the stores' shared helpers, so a bug there is caught too). After every step:
write-once (a turn's recorded runtime and inference id never change) and append-only
(every snapshot ever saved is still there, unchanged, ids only grow).

A machine against the ``upsert-overwrite`` policy must fail: the test can fail.
"""

from __future__ import annotations

import json
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import attrs
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from persisters.errors import EmptyRuntimeError, InvalidSaveError, TurnRewriteError
from persisters.memory_store import MemoryTurnStore
from persisters.model import MAX_LIMIT, PHASES, TurnQuery, TurnRecord, TurnSaveOptions, TurnSnapshot
from persisters.sqlite_store import SQLiteTurnStore
from persisters.store import ConflictPolicy, new_value_wins, refuse_rewrite

# Go's strings.TrimSpace set, written out here (not taken from the code under test).
WS = (
    " \t\n\r\f\v\x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + "\u2028\u2029\u202f\u205f\u3000"
)
CONVS = ["a", "b", " "]
SESSIONS = ["s", "", "\u3000"]
TURNS = ["t1", "t2", "t3", ""]
OPT_RUNTIMES = ["", " ", "r1", "r2", " r1 ", "\xa0", "\u3000r2\u2003"]
META_RUNTIMES: list[Any] = [None, "", "r1", "r2", "\tr2", {"slug": "r3"}, {"key": " "}, 5]
OPT_INFERENCES = ["", "i1", "i2"]
META_INFERENCES: list[Any] = [None, "i1", "i2", 7, "  "]


# -- the reference model ----------------------------------------------------------------


def _text(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value.strip(WS)
    return ""


def model_runtime(meta: dict[str, Any] | None) -> str:
    if not meta:
        return ""
    value = meta.get("geppetto.runtime@v1")
    if isinstance(value, dict):
        for field in ("runtime_key", "key", "slug", "profile", "profile_key"):
            if _text(value.get(field)):
                return _text(value.get(field))
        return ""
    return _text(value)


def model_inference(meta: dict[str, Any] | None) -> str:
    return _text(meta.get("geppetto.inference_id@v1")) if meta else ""


@attrs.define
class ModelTurn:
    runtime_key: str
    inference_id: str
    created_at_ms: int
    updated_at_ms: int
    first: tuple[str, str]  # the values recorded by the first save (write-once)


@attrs.define
class Model:
    turns: dict[tuple[str, str, str], ModelTurn] = attrs.field(factory=dict)
    snapshots: list[TurnSnapshot] = attrs.field(factory=list)

    def expect(
        self,
        key: tuple[str, str, str],
        phase: str,
        created: int,
        options: TurnSaveOptions,
        meta: dict[str, Any] | None,
    ) -> type[Exception] | tuple[str, str, bool]:
        """The error a save must raise, or the (runtime, inference, created_turn) it stores."""
        if not all(v.strip(WS) for v in key) or phase not in PHASES or created < 0:
            return InvalidSaveError
        runtime = options.runtime_key.strip(WS) or model_runtime(meta)
        inference = options.inference_id.strip(WS) or model_inference(meta)
        old = self.turns.get(key)
        if old is None:
            return (runtime, inference, True) if runtime else EmptyRuntimeError
        for stored, carried in ((old.runtime_key, runtime), (old.inference_id, inference)):
            if stored and carried and stored != carried:
                return TurnRewriteError
        return old.runtime_key or runtime, old.inference_id or inference, False

    def record(self, snapshot: TurnSnapshot) -> None:
        key = (snapshot.conv_id, snapshot.session_id, snapshot.turn_id)
        old = self.turns.get(key)
        values = (snapshot.runtime_key, snapshot.inference_id)
        if old is None:
            self.turns[key] = ModelTurn(
                *values, snapshot.created_at_ms, snapshot.created_at_ms, values
            )
        else:
            old.runtime_key, old.inference_id = values
            old.updated_at_ms = max(old.updated_at_ms, snapshot.created_at_ms)
        self.snapshots.append(snapshot)

    def listing(self, query: TurnQuery) -> list[TurnSnapshot]:
        found = [
            s
            for s in self.snapshots
            if all(
                getattr(query, f) is None or getattr(s, f) == getattr(query, f)
                for f in (
                    "conv_id",
                    "session_id",
                    "turn_id",
                    "phase",
                    "runtime_key",
                    "inference_id",
                )
            )
            and (query.since_ms is None or s.created_at_ms >= query.since_ms)
        ]
        found.sort(key=lambda s: (s.created_at_ms, s.snapshot_id), reverse=True)
        return found[: query.limit]


# -- the machine ------------------------------------------------------------------------


class StoreMachine(RuleBasedStateMachine):
    kind = "memory"
    backend = "asyncio"
    policy: ConflictPolicy = staticmethod(refuse_rewrite)  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self._stack = ExitStack()
        self._dir = Path(self._stack.enter_context(tempfile.TemporaryDirectory()))
        self.portal: BlockingPortal = self._stack.enter_context(
            start_blocking_portal(backend=self.backend)
        )
        self.store = self.portal.call(self._open)
        self.model = Model()
        self.counter = 0

    async def _open(self) -> Any:
        if self.kind == "memory":
            return MemoryTurnStore(on_conflict=self.policy)
        path = ":memory:" if self.kind == "sqlite-memory" else self._dir / "store.db"
        return await SQLiteTurnStore.open(path, on_conflict=self.policy)

    def teardown(self) -> None:
        try:
            self.portal.call(self.store.close)
        finally:
            self._stack.close()

    def _payload(self, turn: str, meta: dict[str, Any] | None, shape: str) -> str:
        self.counter += 1
        if shape == "garbage":
            return f"not json {self.counter}"
        if shape == "list":
            return json.dumps([self.counter])
        doc = {"id": turn, "blocks": [], "metadata": meta or {}, "data": {"n": self.counter}}
        return json.dumps(doc, sort_keys=True)

    def _save(
        self,
        key: tuple[str, str, str],
        phase: str,
        created: int,
        options: TurnSaveOptions,
        meta: dict[str, Any] | None,
        shape: str = "turn",
    ) -> None:
        payload = self._payload(key[2], meta, shape)
        parsed_meta = meta if shape == "turn" else None
        expected = self.model.expect(key, phase, created, options, parsed_meta)
        before = len(self.model.snapshots)
        if isinstance(expected, type):
            try:
                self.portal.call(self.store.save, *key, phase, created, payload, options)
            except expected as exc:
                assert type(exc) is expected, exc
            else:
                raise AssertionError(f"saving {key} {options} must raise {expected.__name__}")
            assert len(self.model.snapshots) == before
            return
        result = self.portal.call(self.store.save, *key, phase, created, payload, options)
        runtime, inference, created_turn = expected
        assert (result.runtime_key, result.inference_id, result.created_turn) == (
            runtime,
            inference,
            created_turn,
        )
        previous = max((s.snapshot_id for s in self.model.snapshots), default=0)
        assert result.snapshot_id > previous, "snapshot ids only grow (append-only)"
        self.model.record(
            TurnSnapshot(*key, phase, runtime, inference, created, payload, result.snapshot_id)
        )

    @rule(
        conv=st.sampled_from(CONVS),
        session=st.sampled_from(SESSIONS),
        turn=st.sampled_from(TURNS),
        phase=st.sampled_from([*PHASES, "bogus"]),
        created=st.integers(-1, 4),
        opt_runtime=st.sampled_from(OPT_RUNTIMES),
        opt_inference=st.sampled_from(OPT_INFERENCES),
        meta_runtime=st.sampled_from(META_RUNTIMES),
        meta_inference=st.sampled_from(META_INFERENCES),
        shape=st.sampled_from(["turn", "turn", "turn", "garbage", "list"]),
    )
    def save(
        self,
        conv: str,
        session: str,
        turn: str,
        phase: str,
        created: int,
        opt_runtime: str,
        opt_inference: str,
        meta_runtime: Any,
        meta_inference: Any,
        shape: str,
    ) -> None:
        meta: dict[str, Any] = {}
        if meta_runtime is not None:
            meta["geppetto.runtime@v1"] = meta_runtime
        if meta_inference is not None:
            meta["geppetto.inference_id@v1"] = meta_inference
        options = TurnSaveOptions(runtime_key=opt_runtime, inference_id=opt_inference)
        self._save((conv, session, turn), phase, created, options, meta, shape)

    @precondition(lambda self: any(t.runtime_key for t in self.model.turns.values()))
    @rule(data=st.data(), phase=st.sampled_from(PHASES), created=st.integers(0, 4))
    def conflicting_rewrite(self, data: st.DataObject, phase: str, created: int) -> None:
        """A second writer re-saves a recorded turn with another runtime or inference id."""
        keys = sorted(k for k, t in self.model.turns.items() if t.runtime_key)
        key = data.draw(st.sampled_from(keys))
        stored = self.model.turns[key]
        field = data.draw(st.sampled_from(["runtime_key", "inference_id"]))
        other = getattr(stored, field) + "-other" if getattr(stored, field) else "fresh"
        options = TurnSaveOptions(**{field: other})
        self._save(key, phase, created, options, None)

    @rule(
        conv=st.none() | st.sampled_from(CONVS),
        session=st.none() | st.sampled_from(SESSIONS),
        turn=st.none() | st.sampled_from(TURNS),
        phase=st.none() | st.sampled_from(PHASES),
        runtime=st.none() | st.sampled_from(["r1", "r2", "r3", "5"]),
        inference=st.none() | st.sampled_from(["i1", "i2", "7", ""]),
        since=st.none() | st.integers(0, 5),
        limit=st.sampled_from([1, 2, 3, 10, MAX_LIMIT]),
    )
    def list_snapshots(self, **filters: Any) -> None:
        query = TurnQuery(
            conv_id=filters["conv"],
            session_id=filters["session"],
            turn_id=filters["turn"],
            phase=filters["phase"],
            runtime_key=filters["runtime"],
            inference_id=filters["inference"],
            since_ms=filters["since"],
            limit=filters["limit"],
        )
        assert self.portal.call(self.store.list, query) == self.model.listing(query)

    @rule(conv=st.sampled_from(CONVS), phase=st.sampled_from(PHASES))
    def load_latest(self, conv: str, phase: str) -> None:
        found = self.model.listing(TurnQuery(conv_id=conv, phase=phase, limit=1))
        latest = self.portal.call(self.store.load_latest_turn, conv, phase)
        assert latest == (found[0] if found else None)

    @rule(
        conv=st.sampled_from(CONVS), session=st.sampled_from(SESSIONS), turn=st.sampled_from(TURNS)
    )
    def get_turn(self, conv: str, session: str, turn: str) -> None:
        stored = self.model.turns.get((conv, session, turn))
        expected = (
            None
            if stored is None
            else TurnRecord(
                conv,
                session,
                turn,
                stored.runtime_key,
                stored.inference_id,
                stored.created_at_ms,
                stored.updated_at_ms,
            )
        )
        assert self.portal.call(self.store.get_turn, conv, session, turn) == expected

    @rule(conv=st.sampled_from(CONVS))
    def list_turns(self, conv: str) -> None:
        mine = [(k, t) for k, t in self.model.turns.items() if k[0] == conv]
        mine.sort(key=lambda kt: kt[1].created_at_ms)  # stable: ties keep first-save order
        got = self.portal.call(self.store.list_turns, conv)
        assert [(r.session_id, r.turn_id, r.runtime_key, r.inference_id) for r in got] == [
            (k[1], k[2], t.runtime_key, t.inference_id) for k, t in mine
        ]

    @precondition(lambda self: self.kind == "sqlite-file")
    @rule()
    def reopen(self) -> None:
        self.portal.call(self.store.close)
        self.store = self.portal.call(self._open)
        # A writer's open repairs as the real store does (migration.FILL_UPDATED_AT_SQL): a
        # turn whose updated_at_ms is not positive gets its positive turn_created_at_ms,
        # else the time of the open. Here the first save's time is never above the last's,
        # so such a turn gets the open's time: positive, and kept from then on.
        for key, turn in self.model.turns.items():
            if turn.updated_at_ms <= 0:
                stored = self.portal.call(self.store.get_turn, *key)
                assert stored is not None and stored.updated_at_ms > 0, (key, stored)
                turn.updated_at_ms = stored.updated_at_ms

    @invariant()
    def append_only_and_write_once(self) -> None:
        everything = self.portal.call(self.store.list, TurnQuery(limit=MAX_LIMIT))
        assert sorted(everything, key=lambda s: s.snapshot_id) == sorted(
            self.model.snapshots, key=lambda s: s.snapshot_id
        )
        for key, turn in self.model.turns.items():
            first_runtime, first_inference = turn.first
            assert not first_runtime or turn.runtime_key == first_runtime, key
            assert not first_inference or turn.inference_id == first_inference, key


def machine(kind: str, backend: str, policy: ConflictPolicy = refuse_rewrite) -> type:
    return type(
        f"StoreMachine_{kind}_{backend}",
        (StoreMachine,),
        {"kind": kind, "backend": backend, "policy": staticmethod(policy)},
    )


def run(
    kind: str, backend: str, examples: int, steps: int, *, shrink: bool = True, **kw: Any
) -> None:
    run_state_machine_as_test(
        machine(kind, backend, **kw),
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            phases=list(Phase) if shrink else [Phase.generate],
            database=None if not shrink else settings.default.database,
        ),
    )


DEFAULT_RUNS = [
    ("memory", "asyncio"),
    ("sqlite-file", "asyncio"),
    ("sqlite-memory", "asyncio"),
    ("sqlite-file", "trio"),
]


@pytest.mark.parametrize(("kind", "backend"), DEFAULT_RUNS)
def test_store_matches_the_model(kind: str, backend: str) -> None:
    run(kind, backend, examples=40 if kind == "memory" else 25, steps=35)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("kind", ["memory", "sqlite-file", "sqlite-memory"])
def test_store_matches_the_model_long(kind: str, backend: str) -> None:
    run(kind, backend, examples=200, steps=50)


def test_the_machine_catches_upsert_overwrite() -> None:
    with pytest.raises(AssertionError):
        run("memory", "asyncio", examples=200, steps=30, shrink=False, policy=new_value_wins)


def test_the_write_once_triggers_hold_sqlite_to_the_model_even_under_upsert_overwrite() -> None:
    """On a SQLite file the triggers refuse what the buggy policy lets through, exactly where
    the model (the correct store) refuses: the same machine finds nothing to catch."""
    run("sqlite-file", "asyncio", examples=25, steps=30, shrink=False, policy=new_value_wins)
