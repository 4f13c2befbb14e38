"""Group commit: concurrent writes batched into one transaction, leader/follower style.

Nothing here knows SQL. A :class:`GroupCommit` queues :class:`PendingWrite` ops and hands
them, oldest first, to a *commit stream* (``SQLiteDatabase.commit_stream`` for the SQLite
store) that applies them in one transaction in a worker thread. A write's waiter gets its
own op's result or error; a failed batch fails exactly the ops it took.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
import sniffio

from persisters.errors import StoreError


class PendingWrite:
    """One queued write; ``event`` is set when it is done or its waiter must lead.

    ``fn(conn, *args)`` is what the commit stream applies; ``outcome()`` is its result (or
    raises its error) once ``done``.
    """

    __slots__ = ("args", "done", "error", "event", "fn", "result", "taken")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False
        self.taken = False
        self.event: anyio.Event | None = None

    def outcome(self) -> Any:
        """The op's result, or raise its error (call once ``done``)."""
        if self.error is not None:
            raise self.error
        return self.result


#: Applies ops in one transaction as the callable it is given hands them over (None: no
#: more), fills each op's result or error, marks it done, and returns the ops it took.
#: Called in a worker thread.
CommitStream = Callable[[Callable[[], PendingWrite | None]], list[PendingWrite]]


def _noop(conn: Any) -> None:
    return None


def _new_event() -> anyio.Event:
    """``anyio.Event()``, minus the backend lookup ``Event.__new__`` does on every call.

    The running backend's concrete class is looked up once per backend (asyncio and trio
    may both run in one process); that lookup was ~5 % of a save under concurrency.
    """
    backend = sniffio.current_async_library()
    cls = _EVENT_CLASSES.get(backend)
    if cls is None:
        cls = _EVENT_CLASSES[backend] = type(anyio.Event())
    return cls()


_EVENT_CLASSES: dict[str, type[anyio.Event]] = {}


class GroupCommit:
    """Batches concurrent writes into one transaction (leader/follower group commit).

    The first writer to find no commit running becomes the leader: it commits the queued
    ops (its own included, at most ``max_batch`` per transaction, oldest first) in a worker
    thread until its own op is done, then hands leadership to the oldest op still waiting.
    The worker applies ops as it takes them and commits when the queue runs dry, so saves
    queued while it works join the open transaction: their statements run while the event
    loop produces more (SQLite releases the GIL). Each waiter waits on its own event.
    No background task is needed, so the store works inside or outside any task group.

    ``enqueue`` + ``flush`` is the same machinery for a driver that decides when to
    commit (the simulation kernel queues a whole virtual instant's saves, then flushes).
    """

    def __init__(
        self, commit_stream: CommitStream, *, max_batch: int = 1024, max_wait_ms: float = 0.0
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self._commit_stream = commit_stream
        self._max_batch = max_batch
        self._max_wait_s = max_wait_ms / 1000
        self._queue: deque[PendingWrite] = deque()
        # The leader's worker thread takes ops while this thread may still queue (append
        # is atomic) or withdraw them (remove is not): taking and withdrawing hold the lock.
        self._queue_lock = threading.Lock()
        self._taken = 0  # ops taken into the transaction now being applied
        self._leading = False
        self.batches = 0
        self.ops = 0

    def enqueue(self, fn: Callable[..., Any], *args: Any) -> PendingWrite:
        """Queue ``fn(conn, *args)`` without waiting; it commits with the next batch."""
        op = PendingWrite(fn, args)
        self._queue.append(op)
        return op

    async def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Queue ``fn(conn, *args)`` and return its result once its batch committed."""
        return await self.wait(self.enqueue(fn, *args))

    async def flush(self) -> None:
        """Return once everything queued before this call has committed (or failed)."""
        # Each op carries its own outcome; a failed batch must not fail the flusher too.
        with contextlib.suppress(StoreError):
            await self.submit(_noop)

    async def wait(self, op: PendingWrite) -> Any:
        """Wait for a queued op (leading batches when no one else is)."""
        try:
            if self._leading:
                op.event = _new_event()
                await op.event.wait()  # done, or handed the leadership
            if not op.done:
                await self._lead(op)
        except BaseException:
            with self._queue_lock:
                if not op.taken:
                    self._queue.remove(op)
            if op.event is not None and op.event.is_set() and not op.done:
                self._handoff()  # we were made leader but will not lead
            raise
        return op.outcome()

    async def _lead(self, own: PendingWrite) -> None:
        self._leading = True
        try:
            while not own.done:
                if self._max_wait_s and len(self._queue) < self._max_batch:
                    await anyio.sleep(self._max_wait_s)
                self._taken = 0
                batch = await anyio.to_thread.run_sync(self._commit_stream, self._take)
                self.batches += 1
                self.ops += len(batch)
                for op in batch:
                    if op.event is not None:
                        op.event.set()
        finally:
            self._handoff()

    def _take(self) -> PendingWrite | None:
        """The next queued op for the transaction being applied (called in its thread);
        None once the queue is empty or the batch holds ``max_batch`` ops."""
        with self._queue_lock:
            if not self._queue or self._taken >= self._max_batch:
                return None
            op = self._queue.popleft()
            op.taken = True
            self._taken += 1
            return op

    def _handoff(self) -> None:
        """Wake the oldest queued op that has a waiter to lead; else nobody leads."""
        for op in self._queue:
            if op.event is not None and not op.event.is_set():
                self._leading = True
                op.event.set()
                return
        self._leading = False
