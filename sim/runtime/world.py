"""The simulation world: kernel, clock, seeded streams, ids, stores, actors, recorder.

Everything a run needs hangs off one :class:`World`, built from one seed. The world is
also the environment the persistence pipelines run in (:class:`persisters.pipeline.
PipelineEnv`): its ``store`` routes every call through the kernel as real I/O, so saves
run off the simulation's schedule and concurrent saves reach the store's group commit
together.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from persisters.model import ConversationRecord, SaveResult, TurnQuery, TurnRecord, TurnSnapshot
from persisters.store import ConversationIndex, TurnStore, WriteQueue
from sim.runtime.conversation import DURABILITIES, SESSION_SOURCES, Conversation, Prompt
from sim.runtime.engine import FakeEngine
from sim.runtime.faults import FaultPlan, FaultRule
from sim.runtime.kernel import Kernel
from sim.runtime.profiles import ProfileRegistry
from sim.runtime.recorder import Recorder
from sim.runtime.variants import Build, build
from sim.seeding import IdSource, RandomStreams


class KernelStore:
    """The store's save and reads as the world's actors use them: each call runs as kernel
    I/O (the simulation waits, time stands still)."""

    def __init__(self, store: TurnStore, kernel: Kernel) -> None:
        self._store = store
        self._queue = store.group_commit
        self._kernel = kernel

    async def save(self, *args: Any, **kwargs: Any) -> SaveResult:
        if self._queue is None:
            return await self._kernel.io(partial(self._store.save, *args, **kwargs))
        op = self._queue.enqueue_save(*args, **kwargs)  # batched with the instant's other saves
        await self._kernel.wait_deferred(self._queue.flush)
        return op.outcome()

    async def list(self, query: TurnQuery) -> list[TurnSnapshot]:
        return await self._kernel.io(self._store.list, query)

    async def load_latest_turn(self, conv_id: str, phase: str) -> TurnSnapshot | None:
        return await self._kernel.io(self._store.load_latest_turn, conv_id, phase)

    async def get_turn(self, conv_id: str, session_id: str, turn_id: str) -> TurnRecord | None:
        return await self._kernel.io(self._store.get_turn, conv_id, session_id, turn_id)

    async def list_turns(self, conv_id: str) -> list[TurnRecord]:
        return await self._kernel.io(self._store.list_turns, conv_id)

    async def close(self) -> None:  # the world does not own the store
        return None


class KernelIndex:
    """A ConversationIndex whose calls run as kernel I/O; writes go through ``queue`` (the
    store's group commit) when the store has one."""

    def __init__(self, index: ConversationIndex, queue: WriteQueue | None, kernel: Kernel) -> None:
        self._index = index
        self._queue = queue
        self._kernel = kernel

    async def set_current_runtime(
        self, conv_id: str, session_id: str, runtime_key: str, profile_slug: str, at_ms: int
    ) -> ConversationRecord:
        args = (conv_id, session_id, runtime_key, profile_slug, at_ms)
        if self._queue is None:
            return await self._kernel.io(self._index.set_current_runtime, *args)
        op = self._queue.enqueue_set_current_runtime(*args)
        await self._kernel.wait_deferred(self._queue.flush)
        return op.outcome()

    async def touch(self, conv_id: str, at_ms: int) -> None:
        if self._queue is None:
            await self._kernel.io(self._index.touch, conv_id, at_ms)
            return
        op = self._queue.enqueue_touch(conv_id, at_ms)
        await self._kernel.wait_deferred(self._queue.flush)
        op.outcome()

    async def get(self, conv_id: str) -> ConversationRecord | None:
        return await self._kernel.io(self._index.get, conv_id)

    async def list(self) -> list[ConversationRecord]:
        return await self._kernel.io(self._index.list)


class World:
    """One simulated run. Build it, then ``await world.run(main)``."""

    def __init__(
        self,
        *,
        seed: int,
        store: TurnStore,
        profiles: ProfileRegistry,
        variants: Build | None = None,
        recorder: Recorder | None = None,
        scenario: str = "",
        retry_attempts: int = 3,
        retry_backoff_ms: int = 10,
        store_latency_ms: int = 0,
        keep_history: bool = True,
    ) -> None:
        self.seed = seed
        self.streams = RandomStreams(seed)
        self.kernel = Kernel(self.streams.stream("schedule"))
        self.ids = IdSource(self.streams)
        self.raw_store = store
        self.store = KernelStore(store, self.kernel)
        self.index = KernelIndex(store.conversations, store.group_commit, self.kernel)
        self.profiles = profiles
        self.build = variants if variants is not None else build()
        self.recorder = recorder or Recorder(
            clock=self.now_ms, scenario=scenario, seed=seed, keep=keep_history
        )
        self.faults = FaultPlan()
        self.faults.on_fire = self._fault_fired
        self.retry_attempts = retry_attempts
        self.retry_backoff_ms = retry_backoff_ms
        self.store_latency_ms = store_latency_ms
        self.engine = FakeEngine(self)
        self.conversations: dict[str, Conversation] = {}
        #: The server process: its boot number and in-memory counters (fresh at each boot).
        self.boot = 0
        self.counters: dict[str, int] = {}

    # -- the pipeline environment -------------------------------------------------------

    def now_ms(self) -> int:
        return self.kernel.now_ms

    async def sleep(self, ms: int) -> None:
        await self.kernel.sleep(ms)

    def _fault_fired(self, rule: FaultRule, ctx: dict[str, Any]) -> None:
        self.recorder.emit(
            "fault.injected",
            point=rule.point,
            kind=rule.kind,
            firing=rule.fired,
            times=rule.times,
            **ctx,
        )

    # -- actors -------------------------------------------------------------------------

    def open_conversation(
        self,
        conv_id: str,
        *,
        profile: str,
        session_id: str | None = None,
        session_from: str = "conversation",
        history: bool = False,
        durability: str = "sync",
        reopened: bool = False,
    ) -> Conversation:
        """Start a conversation actor (from a simulated task); the profile must exist.

        ``session_from="metadata"``: its pipelines are handed no session and take it from
        each turn's ``geppetto.session_id@v1`` (which always carries the session).
        ``history``: every inference is fed the conversation's history (its latest stored
        final). ``durability="async"``: phase snapshots are written in the background.
        """
        if conv_id in self.conversations:
            raise ValueError(f"conversation {conv_id!r} is already open")
        if durability not in DURABILITIES:
            raise ValueError(
                f"durability must be one of {', '.join(DURABILITIES)}, got {durability!r}"
            )
        if session_from not in SESSION_SOURCES:
            raise ValueError(
                f"session_from must be one of {', '.join(SESSION_SOURCES)}, got {session_from!r}"
            )
        self.profiles.get(profile)  # unknown profile: a clear error now
        session = session_id or self.ids.new("session", conv_id)
        conv = Conversation(
            self,
            conv_id,
            session,
            profile,
            session_from=session_from,
            history=history,
            durability=durability,
            reopened=reopened,
        )
        self.conversations[conv_id] = conv
        conv.task = self.kernel.spawn(conv.supervise, name=f"{conv_id}/supervisor")
        return conv

    async def restart_server(self) -> list[Prompt]:
        """A cold restart of the server process (from a simulated task): every actor dies
        where it is (in-flight inferences get no final save, queued prompts are lost), the
        in-memory counters start afresh, and every conversation is reopened from the store,
        which outlives the process. Returns the prompts the dead process held."""
        convs = list(self.conversations.values())
        held = [p for conv in convs for p in conv.kill()]
        for conv in convs:
            if conv.task is not None:
                await conv.task.finished.wait()
        self.recorder.emit(
            "server.stopped",
            boot=self.boot,
            interrupted=[p.turn_id for p in held if p.outcome == "interrupted"],
            lost=sum(1 for p in held if p.outcome == "lost"),
        )
        self.boot += 1
        self.counters = {}
        self.conversations = {}
        self.recorder.emit("server.started", boot=self.boot, conversations=len(convs))
        for conv in convs:
            self.open_conversation(
                conv.conv_id,
                profile=conv.profile_slug,
                session_id=conv.session_id,
                session_from=conv.session_from,
                history=conv.history,
                durability=conv.durability,
                reopened=True,
            )
        return held

    async def stop_all(self) -> None:
        """Stop every conversation, in order, and wait for each actor to end."""
        for conv in self.conversations.values():
            conv.stop()
        for conv in self.conversations.values():
            if conv.task is not None:
                await conv.task.finished.wait()

    async def run(self, main: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run ``main`` as the director; stop all actors after it; nothing outlives this."""

        async def director() -> Any:
            try:
                return await main(*args)
            finally:
                await self.stop_all()

        try:
            return await self.kernel.run(director, name="director")
        finally:
            self.recorder.close()
