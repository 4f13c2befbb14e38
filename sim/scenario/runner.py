"""Running scenarios: the director that plays the steps, then the invariant checks.

:func:`run_scenario` is what ``turnsim run``, the pytest plugin and ``turnsim explore``
call. Conversations are stored under ``<scenario name>.<conversation name>`` so several
scenarios can share one database.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable
from typing import Any

import attrs

from persisters.errors import StoreError, TurnRewriteError
from persisters.model import (
    MAX_LIMIT,
    TurnQuery,
    TurnSaveOptions,
    extract_runtime_key,
    metadata_of_payload,
)
from persisters.sqlite_store import SQLiteTurnStore
from sim.runtime.conversation import Conversation, Prompt
from sim.runtime.faults import FaultRule
from sim.runtime.kernel import SimTask, SimulationStalled
from sim.runtime.variants import build
from sim.runtime.world import World
from sim.scenario.invariants import INVARIANTS, RunState, Violation, check_all
from sim.scenario.parse import (
    Cancel,
    Crash,
    ExpectConversation,
    ExpectFailure,
    ExpectTurn,
    ExpectTurnCount,
    InjectFault,
    Located,
    Resave,
    Scenario,
    Send,
    Sleep,
    SwitchProfile,
    WaitIdle,
)


@attrs.frozen
class Failure:
    """One reason a scenario failed: an invariant, an expectation, or an error."""

    kind: str  # invariant | expectation | error
    name: str  # invariant name, step kind, or error type
    message: str
    conv_id: str = ""
    turn_id: str = ""
    phase: str = ""
    expected: str = ""
    actual: str = ""
    step: int = 0
    where: str = ""

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.define
class ScenarioResult:
    """The outcome of one scenario run."""

    scenario: str
    path: str
    seed: int
    variants: tuple[str, ...]
    failures: list[Failure]
    turns: int
    switches: int
    checks: int
    virtual_ms: int
    wall_s: float
    events: list[dict[str, Any]] = attrs.field(repr=False, factory=list)
    db: str | None = None

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def replay(self) -> str:
        return replay_command(self.path, self.seed, self.variants)

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "path": self.path,
            "seed": self.seed,
            "variants": list(self.variants),
            "passed": self.passed,
            "turns": self.turns,
            "switches": self.switches,
            "checks": self.checks,
            "virtual_ms": self.virtual_ms,
            "wall_s": round(self.wall_s, 4),
            "failures": [f.to_json() for f in self.failures],
            "replay": self.replay,
            "db": self.db,
        }

    def describe(self) -> str:
        """A failure report for people: what broke, where, what caused it, how to replay."""
        variant = f" [{'+'.join(self.variants)}]" if self.variants else ""
        state = "PASS" if self.passed else "FAIL"
        lines = [f"{state} {self.scenario}{variant} seed {self.seed} ({self.path})"]
        for f in self.failures:
            where = " ".join(
                x
                for x in (
                    f"conversation {f.conv_id}" if f.conv_id else "",
                    f"turn {f.turn_id}" if f.turn_id else "",
                    f"phase {f.phase}" if f.phase else "",
                )
                if x
            )
            head = f"  {f.kind} {f.name}" + (f" ({where})" if where else "")
            lines.append(f"{head}: {f.message}")
            if f.expected or f.actual:
                lines.append(f"    expected {f.expected or '-'}, actual {f.actual or '-'}")
            if f.step:
                lines.append(f"    caused by step {f.step} at {f.where}")
        if not self.passed:
            lines.append(f"  replay: {self.replay}")
        return "\n".join(lines)


def replay_command(path: str, seed: int, variants: Iterable[str]) -> str:
    cmd = f"turnsim run {path} --seed {seed}"
    variants = tuple(variants)
    if variants:
        cmd += f" --variant {'+'.join(variants)}"
    return cmd


class ExpectationFailed(Exception):
    pass


class Director:
    """Plays a scenario's steps, in order, as the simulation's main task."""

    def __init__(self, world: World, scenario: Scenario) -> None:
        self.world = world
        self.scenario = scenario
        self.convs: dict[str, Conversation] = {}
        self.labels: dict[str, Prompt] = {}
        self.background: list[tuple[str, SimTask]] = []
        self.failures: list[Failure] = []
        self.expected_failures: set[int] = set()
        self.step_at_seq: list[tuple[int, Located]] = []
        self.checks = 0
        self.current = 0  # index of the step being played

    def conv_id(self, name: str) -> str:
        return f"{self.scenario.name}.{name}"

    async def run(self) -> None:
        for spec in self.scenario.conversations:
            self.convs[spec.name] = self.world.open_conversation(
                self.conv_id(spec.name), profile=spec.profile, session_id=spec.session
            )
        for located in self.scenario.steps:
            record = self.world.recorder.emit(
                "step.started",
                step=located.index,
                kind=located.kind,
                line=located.where.line,
                **self._step_context(located),
            )
            self.step_at_seq.append((record.get("seq", 0), located))
            self.current = located.index
            try:
                await getattr(self, f"_{located.kind}")(located.step)
            except ExpectationFailed as exc:
                self._fail(located, str(exc))
        await self._wait_idle("all")

    def _step_context(self, located: Located) -> dict[str, str]:
        """The conversation (and turn label) a step concerns, for its log events."""
        out: dict[str, str] = {}
        conv = getattr(located.step, "conv", None)
        if conv and conv != "all":
            out["conv_id"] = self.conv_id(conv)
        turn = getattr(located.step, "turn", None)
        if turn:
            out["turn"] = turn
        return out

    def _fail(self, located: Located, message: str, **fields: str) -> None:
        self.world.recorder.emit(
            "expectation.failed",
            step=located.index,
            kind=located.kind,
            message=message,
            line=located.where.line,
            **self._step_context(located),
            **fields,
        )
        self.failures.append(
            Failure(
                "expectation",
                located.kind,
                message,
                step=located.index,
                where=str(located.where),
                **fields,
            )
        )

    def step_for_seq(self, seq: int) -> Located | None:
        """The step that was running when history event ``seq`` happened."""
        found = None
        for start, located in self.step_at_seq:
            if start > seq:
                break
            found = located
        return found

    # -- steps --------------------------------------------------------------------------

    async def _send(self, step: Send) -> None:
        prompt = await self.convs[step.conv].send(
            step.prompt, wait=step.wait, profile=step.profile, label=step.turn
        )
        if step.turn:
            self.labels[step.turn] = prompt

    async def _switch_profile(self, step: SwitchProfile) -> None:
        conv = self.convs[step.conv]
        if step.at is None:
            await conv.switch_profile(step.profile, origin=self.current)
            return
        if step.at == "random":
            index = len(self.background)
            rng = self.world.streams.stream(f"at/{step.conv}/{index}")
            delay = rng.randint(0, step.within_ms)
        else:
            delay = int(step.at)

        async def later() -> None:
            await self.world.sleep(delay)
            await conv.switch_profile(step.profile, origin=origin)

        origin = self.current
        task = self.world.kernel.spawn(later, name=f"{step.conv}/switch@{delay}")
        self.background.append((step.conv, task))

    async def _wait_idle(self, conv: str | WaitIdle) -> None:
        name = conv.conv if isinstance(conv, WaitIdle) else conv
        while True:
            pending = [t for c, t in self.background if (name == "all" or c == name) and not t.done]
            for task in pending:
                await task.finished.wait()
            targets = self.convs.values() if name == "all" else [self.convs[name]]
            for c in targets:
                await c.wait_idle()
            if not any(c.busy for c in targets) and not any(
                not t.done for c, t in self.background if name == "all" or c == name
            ):
                return

    async def _sleep(self, step: Sleep) -> None:
        await self.world.sleep(step.ms)

    async def _cancel(self, step: Cancel) -> None:
        self.convs[step.conv].cancel_inference()

    async def _crash(self, step: Crash) -> None:
        self.convs[step.conv].crash()

    async def _make_readonly(self, step: Any) -> None:
        store = self.world.raw_store
        flip = getattr(store, "make_read_only", None)
        if flip is None:
            raise ExpectationFailed(f"{type(store).__name__} cannot be made read-only")
        await self.world.kernel.io(flip)

    async def _inject_fault(self, step: InjectFault) -> None:
        self.world.faults.add(
            FaultRule(
                point=step.point,
                kind=step.kind,
                times=step.times,
                skip=step.skip,
                conv_id=self.conv_id(step.conv) if step.conv else None,
                phase=step.phase,
                pipeline=step.pipeline,
            )
        )

    def _prompt(self, label: str) -> Prompt:
        prompt = self.labels[label]
        if not prompt.started.is_set:
            raise ExpectationFailed(f"turn {label!r} has not started yet (add wait_idle)")
        return prompt

    async def _resave(self, step: Resave) -> None:
        world = self.world
        conv = self.convs[step.conv]
        prompt = self._prompt(step.turn)
        turn_id = prompt.turn_id or "turn"
        found = await world.store.list(TurnQuery(conv_id=conv.conv_id, turn_id=turn_id, limit=1))
        payload = found[0].payload if found else "{}"
        if step.runtime_key is not None:
            runtime = step.runtime_key
        elif step.source == "pointer":
            runtime = conv.current_runtime_key
        else:
            runtime = extract_runtime_key(metadata_of_payload(payload))
        context = {
            "conv_id": conv.conv_id,
            "session_id": conv.session_id,
            "turn_id": turn_id,
            "turn": step.turn,
            "phase": "final",
            "carried_runtime_key": runtime,
        }
        try:
            result = await world.store.save(
                conv.conv_id,
                conv.session_id,
                turn_id,
                "final",
                world.now_ms(),
                payload,
                TurnSaveOptions(runtime_key=runtime),
            )
        except TurnRewriteError as exc:
            world.recorder.emit(
                "turn.resave_refused", **context, error=str(exc), expected=step.refusal_expected
            )
            if not step.refusal_expected:
                raise ExpectationFailed(f"the second writer's save was refused: {exc}") from None
            return
        world.recorder.emit(
            "turn.resaved",
            **context,
            runtime_key=result.runtime_key,
            inference_id=result.inference_id,
            snapshot_id=result.snapshot_id,
        )

    async def _expect_turn(self, step: ExpectTurn) -> None:
        self.checks += 1
        world = self.world
        conv = self.convs[step.conv]
        prompt = self._prompt(step.turn)
        problems = []
        if step.outcome is not None and prompt.outcome != step.outcome:
            problems.append(f"outcome is {prompt.outcome}, expected {step.outcome}")
        snaps = (
            await world.store.list(
                TurnQuery(conv_id=conv.conv_id, turn_id=prompt.turn_id, limit=MAX_LIMIT)
            )
            if prompt.turn_id
            else []
        )
        record = await world.index.get(conv.conv_id)
        shown = [world.build.read_path.view(s, record) for s in snaps]
        if step.runtime_key is not None:
            runtimes = sorted({s.runtime_key for s in shown})
            if not snaps:
                problems.append(f"no stored snapshot, expected runtime {step.runtime_key}")
            elif runtimes != [step.runtime_key]:
                problems.append(
                    f"runtime reported as {'/'.join(runtimes)}, expected {step.runtime_key}"
                )
        if step.phases is not None:
            phases = sorted({s.phase for s in snaps})
            if phases != sorted(set(step.phases)):
                problems.append(f"stored phases {phases}, expected {sorted(set(step.phases))}")
        if problems:
            raise ExpectationFailed(f"turn {step.turn!r}: " + "; ".join(problems))

    async def _expect_turn_count(self, step: ExpectTurnCount) -> None:
        self.checks += 1
        turns = await self.world.store.list_turns(self.conv_id(step.conv))
        if len(turns) != step.count:
            raise ExpectationFailed(
                f"conversation {step.conv!r} has {len(turns)} stored turns, expected {step.count}"
            )

    async def _expect_conversation(self, step: ExpectConversation) -> None:
        self.checks += 1
        record = await self.world.index.get(self.conv_id(step.conv))
        if record is None:
            raise ExpectationFailed(f"conversation {step.conv!r} has no index row")
        problems = []
        if (
            step.current_runtime_key is not None
            and record.current_runtime_key != step.current_runtime_key
        ):
            problems.append(
                f"current_runtime_key is {record.current_runtime_key!r}, expected "
                f"{step.current_runtime_key!r}"
            )
        if step.session is not None and record.session_id != step.session:
            problems.append(f"session is {record.session_id!r}, expected {step.session!r}")
        if problems:
            raise ExpectationFailed(f"conversation {step.conv!r}: " + "; ".join(problems))

    async def _expect_failure(self, step: ExpectFailure) -> None:
        self.checks += 1
        turn_id = self._prompt(step.turn).turn_id if step.turn else None
        conv_id = self.conv_id(step.conv) if step.conv else None
        matched = [
            e
            for e in self.world.recorder.select("snapshot.save_failed", "turn.persist_failed")
            if (conv_id is None or e["conv_id"] == conv_id)
            and (turn_id is None or e["turn_id"] == turn_id)
            and (step.phase is None or e["phase"] == step.phase)
            and (step.pipeline is None or e["pipeline"] == step.pipeline)
            and (step.contains is None or step.contains in e["error"])
        ]
        self.expected_failures.update(e["seq"] for e in matched)
        if step.count is None and not matched:
            raise ExpectationFailed("expected a surfaced save failure, but none was reported")
        if step.count is not None and len(matched) != step.count:
            raise ExpectationFailed(
                f"expected {step.count} surfaced save failure(s), {len(matched)} reported"
            )


async def collect_state(world: World, director: Director) -> RunState:
    """Read the store's final state for the scenario's conversations."""
    store = world.raw_store
    snapshots, turns, conversations = [], [], []
    for name in director.convs:
        conv_id = director.conv_id(name)
        snapshots.extend(await store.list(TurnQuery(conv_id=conv_id, limit=MAX_LIMIT)))
        turns.extend(await store.list_turns(conv_id))
        record = await store.conversations.get(conv_id)  # type: ignore[attr-defined]
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
) -> ScenarioResult:
    """Run one scenario on an embedded SQLite store and check every invariant.

    ``db`` keeps the database at that path (shared by several scenarios is fine);
    by default a temporary file is used and removed.
    """
    seed = scenario.seed if seed is None else seed
    chosen = build(variants)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="turnsim-") as tmp:
        path = os.fspath(db) if db is not None else os.path.join(tmp, "run.db")
        existing = db is not None and os.path.exists(path) and os.path.getsize(path) > 0
        store = await SQLiteTurnStore.open(
            path, on_conflict=chosen.on_conflict, check_integrity=existing
        )
        try:
            return await _run(scenario, seed, chosen, store, path if db else None, started)
        finally:
            await store.close()


async def _run(
    scenario: Scenario,
    seed: int,
    chosen: Any,
    store: SQLiteTurnStore,
    db: str | None,
    started: float,
) -> ScenarioResult:
    prefix = f"{scenario.name}."
    taken = [c.conv_id for c in await store.conversations.list() if c.conv_id.startswith(prefix)]
    if taken:
        raise StoreError(
            f"{store.path} already holds conversations of scenario {scenario.name!r} "
            f"({', '.join(taken[:3])}); use a new --db file or delete it"
        )
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
