"""The workload the benches share, and the raw-SQLite baselines they divide by.

:func:`simulate` runs N conversations x T turns through the real simulation (kernel,
conversation actors, fake engine, snapshot hook and final persister) on a SQLite store,
with profile switches between turns and during inferences. :func:`raw_executemany` is the
practical limit of storing the same rows: one ``executemany`` into the same schema, with
the same pragmas, in one transaction.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import attrs

from persisters.migration import migrate
from persisters.model import (
    FINAL,
    KEY_INFERENCE_ID,
    KEY_RUNTIME,
    KEY_SESSION_ID,
    Block,
    Turn,
    TurnSaveOptions,
)
from persisters.sqlite_database import connect
from persisters.sqlite_store import SQLiteTurnStore
from sim.logs.setup import configure_logging
from sim.runtime.profiles import Profile, ProfileRegistry
from sim.runtime.world import World

#: The snapshot columns a save writes (snapshot_id is assigned by SQLite).
SNAPSHOT_COLUMNS = (
    "conv_id",
    "session_id",
    "turn_id",
    "phase",
    "created_at_ms",
    "payload",
    "runtime_key",
    "inference_id",
)
RAW_INSERT = (
    f"INSERT INTO turn_snapshots ({', '.join(SNAPSHOT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in SNAPSHOT_COLUMNS)})"
)
#: Profiles cycle in this order on every switch.
CYCLE = ("inventory", "planner", "support")
SWITCH_EVERY = 5  # turns between profile switches
INFLIGHT_AT_MS = 40  # an in-flight switch lands this long after its inference started


def quiet_logs() -> None:
    """What ``turnsim run`` does without ``--log-file``: only errors reach the console."""
    configure_logging(fmt="console", level="error")


def profiles(jitter_ms: int = 0) -> ProfileRegistry:
    """Three runtimes; ``planner`` makes one tool round (five snapshots per turn)."""
    return ProfileRegistry(
        [
            Profile("inventory", "inventory@v1", latency_ms=100, jitter_ms=jitter_ms),
            Profile(
                "planner",
                "planner@v1",
                latency_ms=150,
                jitter_ms=jitter_ms,
                tool_rounds=1,
                tool_latency_ms=50,
            ),
            Profile("support", "support@v2", latency_ms=80, jitter_ms=jitter_ms),
        ]
    )


@attrs.define
class SimRun:
    """What one simulated run did and how long it took (wall clock)."""

    backend: str
    conversations: int
    turns: int
    wall_s: float
    snapshots: int = 0
    inferences: int = 0
    profile_switches: int = 0
    batches: int = 0
    writes: int = 0
    kernel_switches: int = 0
    virtual_ms: int = 0
    idle_rss: int | None = None

    @property
    def snapshots_per_s(self) -> float:
        return self.snapshots / self.wall_s

    @property
    def mean_batch(self) -> float:
        return self.writes / self.batches if self.batches else 0.0

    def to_json(self) -> dict[str, Any]:
        out = attrs.asdict(self)
        out["snapshots_per_s"] = round(self.snapshots_per_s, 1)
        out["mean_batch"] = round(self.mean_batch, 1)
        return out


async def simulate(
    store: SQLiteTurnStore,
    conversations: int,
    turns: int,
    *,
    seed: int = 1,
    jitter_ms: int = 0,
    on_turn: Callable[[int], None] | None = None,
    on_idle: Callable[[], Any] | None = None,
) -> SimRun:
    """Run ``conversations`` x ``turns`` through the simulation on ``store``.

    Every conversation starts on a profile of :data:`CYCLE`, sends its turns one after
    another and switches to the next profile every :data:`SWITCH_EVERY` turns; every
    other switch lands while an inference is in flight. ``on_turn(n)`` reports finished
    turns (in steps, for a progress bar); ``on_idle()`` is called once every conversation
    is open and idle, before the first prompt.
    """
    world = World(seed=seed, store=store, profiles=profiles(jitter_ms), keep_history=False)
    switches = 0
    done = 0

    def finished() -> None:
        nonlocal done
        done += 1
        if on_turn is not None and done % 100 == 0:
            on_turn(100)

    async def drive(index: int) -> None:
        nonlocal switches
        conv = world.conversations[f"c{index:05d}"]
        slot = index % len(CYCLE)
        for t in range(turns):
            text = f"prompt {t} of conversation {index}"
            if t and t % SWITCH_EVERY == 0:
                slot = (slot + 1) % len(CYCLE)
                switches += 1
                if (t // SWITCH_EVERY + index) % 2:  # the switch lands mid-inference
                    prompt = await conv.send(text, wait=False)
                    await world.sleep(INFLIGHT_AT_MS)
                    await conv.switch_profile(CYCLE[slot])
                    await prompt.finished.wait()
                    finished()
                    continue
                await conv.switch_profile(CYCLE[slot])
            await conv.send(text)
            finished()

    async def director() -> None:
        for i in range(conversations):
            world.open_conversation(f"c{i:05d}", profile=CYCLE[i % len(CYCLE)])
        await world.sleep(1)  # every actor has restored its pointer and waits for commands
        if on_idle is not None:
            on_idle()
        drivers = [
            world.kernel.spawn(drive, i, name=f"driver{i}", supervised=True)
            for i in range(conversations)
        ]
        for task in drivers:
            await task.join()

    writer = store.writer
    batches, writes = writer.batches, writer.ops
    started = time.perf_counter()
    await world.run(director)
    wall = time.perf_counter() - started
    if on_turn is not None and done % 100:
        on_turn(done % 100)
    count = (await store.execute("SELECT count(*) FROM turn_snapshots"))[0][0]
    return SimRun(
        backend=_backend(),
        conversations=conversations,
        turns=turns,
        wall_s=wall,
        snapshots=count,
        inferences=done,
        profile_switches=switches,
        batches=writer.batches - batches,
        writes=writer.ops - writes,
        kernel_switches=world.kernel.switches,
        virtual_ms=world.now_ms(),
    )


def _backend() -> str:
    import sniffio

    return sniffio.current_async_library()


# -- rows and baselines ------------------------------------------------------------------


def read_snapshot_rows(path: str | os.PathLike[str]) -> list[tuple[Any, ...]]:
    """Every stored snapshot of a database, in save order, as :data:`SNAPSHOT_COLUMNS`."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            f"SELECT {', '.join(SNAPSHOT_COLUMNS)} FROM turn_snapshots ORDER BY snapshot_id"
        ).fetchall()
    finally:
        conn.close()


def fresh_database(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A new database with the store's schema, indexes and pragmas (WAL, NORMAL)."""
    conn = connect(path)
    migrate(conn)
    return conn


def raw_executemany(
    path: str | os.PathLike[str], rows: Sequence[tuple[Any, ...]], repeat: int = 3
) -> float:
    """Seconds to insert ``rows`` with one ``executemany`` in one transaction (the limit).

    The best of ``repeat`` runs, each into a fresh database: a limit is what the machine
    can do, not what a noisy moment let it do.
    """
    best = float("inf")
    for attempt in range(repeat):
        target = f"{os.fspath(path)}.{attempt}"
        conn = fresh_database(target)
        try:
            started = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(RAW_INSERT, rows)
            conn.execute("COMMIT")
            best = min(best, time.perf_counter() - started)
        finally:
            conn.close()
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(target + suffix)
    return best


def store_sql(path: str | os.PathLike[str], batches: Sequence[Sequence[tuple[Any, ...]]]) -> float:
    """Seconds to run the store's own statements for every row, one transaction per batch.

    What ``SQLiteTurnStore.save`` executes per save (turn row lookup, turn row insert or
    update, snapshot insert), straight on ``sqlite3`` with nothing around it: the ceiling
    of any turnsim figure that commits in these batches on this schema.
    """
    from persisters import sqlite_store as ss

    conn = fresh_database(path)
    try:
        started = time.perf_counter()
        for batch in batches:
            conn.execute("BEGIN IMMEDIATE")
            for conv, session, turn, phase, created, payload, runtime, inference in batch:
                params = {
                    "conv_id": conv,
                    "session_id": session,
                    "turn_id": turn,
                    "phase": phase,
                    "created": created,
                    "payload": payload,
                    "runtime_key": runtime,
                    "inference_id": inference,
                }
                found = conn.execute(ss._SELECT_TURN, (conv, session, turn)).fetchone()
                conn.execute(ss._INSERT_TURN if found is None else ss._UPDATE_TURN, params)
                conn.execute(ss._INSERT_SNAPSHOT, params)
            conn.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        conn.close()


def instant_batches(
    rows: Sequence[tuple[Any, ...]], max_batch: int = 1024
) -> list[list[tuple[Any, ...]]]:
    """Rows (in save order) cut where the simulation commits: one batch per virtual
    instant (``created_at_ms``), at most ``max_batch`` rows (the store's default) each."""
    out: list[list[tuple[Any, ...]]] = []
    instant = None
    for row in rows:
        if not out or row[4] != instant or len(out[-1]) >= max_batch:
            out.append([])
            instant = row[4]
        out[-1].append(row)
    return out


async def replay(
    store: SQLiteTurnStore,
    rows: Sequence[tuple[Any, ...]],
    on_save: Callable[[int], None] | None = None,
) -> float:
    """Seconds to save ``rows`` through ``store.save``, one task per conversation.

    Each conversation's rows are saved in order, each awaited until committed, all
    conversations at once (what the simulation's actors do, without the simulation).
    """
    by_conv: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows:
        by_conv[row[0]].append(row)

    async def conversation(mine: list[tuple[Any, ...]]) -> None:
        for n, (conv, session, turn, phase, created, payload, runtime, inference) in enumerate(
            mine, 1
        ):
            await store.save(
                conv, session, turn, phase, created, payload, TurnSaveOptions(runtime, inference)
            )
            if on_save is not None and n % 50 == 0:
                on_save(50)
        if on_save is not None and len(mine) % 50:
            on_save(len(mine) % 50)

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for mine in by_conv.values():
            tg.start_soon(conversation, mine)
    return time.perf_counter() - started


def final_turns(conversations: int, turns: int, seed: int = 7) -> list[tuple[Any, ...]]:
    """Finished turns as the final persister stores them, as :data:`SNAPSHOT_COLUMNS`.

    Shaped like the fake engine's turns (user prompt, a tool round on every other turn,
    a reply) with the metadata the pipelines write; ordered turn by turn, conversation by
    conversation.
    """
    rng = random.Random(seed)
    sessions = [f"{rng.getrandbits(128):032x}" for _ in range(conversations)]
    rows = []
    for t in range(turns):
        runtime = f"{CYCLE[(t // SWITCH_EVERY) % len(CYCLE)]}@v1"
        for c in range(conversations):
            turn_id = f"{rng.getrandbits(128):032x}"
            inference_id = f"{rng.getrandbits(128):032x}"
            blocks = [Block("user", f"prompt {t} of conversation {c}")]
            if t % 2:
                blocks += [
                    Block("tool_call", "lookup", {"round": 1}),
                    Block("tool_use", "result 1", {"round": 1}),
                ]
            blocks.append(Block("llm_text", f"[{runtime}] reply {t}"))
            turn = Turn(
                id=turn_id,
                blocks=tuple(blocks),
                metadata={
                    KEY_SESSION_ID: sessions[c],
                    KEY_INFERENCE_ID: inference_id,
                    KEY_RUNTIME: runtime,
                },
                data={"profile": runtime.split("@")[0], "status": "completed"},
            )
            created = 1_700_000_000_000 + t * 1000 + c
            rows.append(
                (
                    f"c{c:05d}",
                    sessions[c],
                    turn_id,
                    FINAL,
                    created,
                    turn.serialize(),
                    runtime,
                    inference_id,
                )
            )
    return rows
