"""A deterministic scheduler for simulated actors on anyio (asyncio and trio alike).

Exactly one simulated task runs at a time. It runs until it blocks on a kernel
primitive (:meth:`Kernel.sleep`, :class:`SimEvent`, :class:`Mailbox`, :meth:`Kernel.io`);
the kernel then picks the next ready task with the seeded ``schedule`` stream. Because the
kernel, not the event loop, decides every interleaving, one seed gives one run on both
backends: trio's randomised scheduler and asyncio's FIFO order never reach the simulation.

Time is virtual: when nothing is ready and no I/O is outstanding, the clock jumps to the
next timer. Real I/O (store saves) runs as ordinary anyio tasks while the simulation waits
for it; it costs no virtual time, and tasks waiting on it resume in submission order. Saves
submitted at the same virtual instant are outstanding together, which is what lets the
store's group commit batch them.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup


class SimCancelled(BaseException):
    """Raised inside a simulated task that was cancelled with :meth:`SimTask.cancel`.

    A BaseException so that ``except Exception`` does not swallow it.
    """


class SimulationStalled(RuntimeError):
    """No task can ever run again while the main task is still waiting."""


class _TaskFailed(Exception):
    def __init__(self, error: BaseException) -> None:
        self.error = error


class SimTask:
    """A simulated task: an anyio task that runs only when the kernel resumes it."""

    __slots__ = (
        "_cancel_pending",
        "_resume",
        "done",
        "error",
        "finished",
        "kernel",
        "name",
        "result",
        "waiting_on",
    )

    def __init__(self, kernel: Kernel, name: str) -> None:
        self.kernel = kernel
        self.name = name
        self._resume = anyio.Event()
        self._cancel_pending = False
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.waiting_on = "start"
        self.finished = SimEvent(kernel)

    def cancel(self) -> None:
        """Raise :class:`SimCancelled` in this task at its current (or next) blocking point."""
        if self.done:
            return
        self._cancel_pending = True
        self.kernel._wake(self)

    async def join(self) -> Any:
        """Wait until the task ends; return its result or raise its error."""
        await self.finished.wait()
        if self.error is not None:
            raise self.error
        return self.result

    def __repr__(self) -> str:
        return f"<SimTask {self.name} waiting on {self.waiting_on}>"


class _IOJob:
    __slots__ = ("done", "error", "flush", "result", "task")

    def __init__(self, task: SimTask, flush: Callable[[], Awaitable[None]] | None = None) -> None:
        self.task = task
        self.done = anyio.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.flush = flush  # set for deferred I/O: completed by calling flush()


class Kernel:
    """Virtual clock plus a single-runner scheduler; see the module docstring."""

    def __init__(self, schedule_rng: random.Random) -> None:
        self.now_ms = 0
        self._rng = schedule_rng
        self._ready: list[SimTask] = []
        self._timers: list[tuple[int, int, SimTask]] = []
        self._io: deque[_IOJob] = deque()
        self._seq = 0
        self._current: SimTask | None = None
        self._idle = anyio.Event()
        self._tg: TaskGroup | None = None
        self._tasks: dict[int, SimTask] = {}
        self._failure: BaseException | None = None
        self._stopped = False
        self._main: SimTask | None = None
        self.switches = 0

    # -- running ------------------------------------------------------------------------

    async def run(self, main: Callable[..., Awaitable[Any]], *args: Any, name: str = "main") -> Any:
        """Run ``main`` as a simulated task until it returns; then stop every task.

        Returns main's result or raises its error. Raises :class:`SimulationStalled` if
        main can never be resumed, and the error of any unsupervised task that failed.
        """
        outcome: BaseException | None = None
        async with anyio.create_task_group() as tg:
            self._tg = tg
            main_task = self.spawn(main, *args, name=name, supervised=True)
            self._main = main_task
            self._dispatch()
            try:
                await self._drive(main_task)
            except (SimulationStalled, _TaskFailed) as exc:
                outcome = exc
            finally:
                self._stopped = True
                tg.cancel_scope.cancel()
        self._tg = None
        if isinstance(outcome, _TaskFailed):
            raise outcome.error
        if outcome is not None:
            raise outcome
        if main_task.error is not None:
            raise main_task.error
        return main_task.result

    async def _drive(self, main_task: SimTask) -> None:
        while not main_task.done:
            await self._idle.wait()
            self._idle = anyio.Event()
            if self._failure is not None:
                raise _TaskFailed(self._failure)
            if main_task.done:
                return
            if self._io:
                # Wait for every outstanding I/O, then resume in submission order.
                jobs = list(self._io)
                self._io.clear()
                flushes = list(dict.fromkeys(j.flush for j in jobs if j.flush is not None))
                for flush in flushes:
                    await flush()
                for job in jobs:
                    if job.flush is None:
                        await job.done.wait()
                for job in jobs:
                    self._make_ready(job.task)
            elif self._timers:
                wake_at = self._timers[0][0]
                self.now_ms = max(self.now_ms, wake_at)
                while self._timers and self._timers[0][0] == wake_at:
                    _, _, task = heapq.heappop(self._timers)
                    self._make_ready(task)
            else:
                blocked = ", ".join(repr(t) for t in self._tasks.values())
                raise SimulationStalled(
                    f"simulation stalled at t={self.now_ms}ms: nothing can run; "
                    f"blocked tasks: {blocked}"
                )
            self._dispatch()

    def _make_ready(self, task: SimTask) -> None:
        task.waiting_on = "ready"
        self._ready.append(task)

    def _dispatch(self) -> None:
        """Resume one ready task (seeded choice), or wake the driver when none is ready."""
        if self._stopped:
            return
        if self._ready:
            n = len(self._ready)
            i = self._rng.randrange(n) if n > 1 else 0
            task = self._ready[i]
            self._ready[i] = self._ready[-1]
            self._ready.pop()
            self._current = task
            self.switches += 1
            task._resume.set()
        else:
            self._current = None
            self._idle.set()

    def _wake(self, task: SimTask) -> None:
        """Make a blocked task ready (used by events, mailboxes and cancellation)."""
        if task.waiting_on in ("ready", "running", "start") or task.done:
            return
        if task.waiting_on.startswith("sleep"):
            self._timers = [t for t in self._timers if t[2] is not task]
            heapq.heapify(self._timers)
        if task.waiting_on == "io":
            return  # I/O completes first; cancellation is seen when it resumes
        self._make_ready(task)

    async def _block(self, what: str) -> None:
        task = self._current
        if task is None:
            raise RuntimeError("kernel primitive used outside a simulated task")
        if task._cancel_pending and what != "io":
            task._cancel_pending = False
            raise SimCancelled(task.name)
        task.waiting_on = what
        task._resume = anyio.Event()
        self._dispatch()
        await task._resume.wait()
        task.waiting_on = "running"
        if task._cancel_pending and what != "io":
            task._cancel_pending = False
            raise SimCancelled(task.name)

    # -- tasks --------------------------------------------------------------------------

    def spawn(
        self, fn: Callable[..., Awaitable[Any]], *args: Any, name: str, supervised: bool = False
    ) -> SimTask:
        """Start a simulated task; it first runs when the kernel picks it.

        An unsupervised task's error stops the whole simulation (it propagates through the
        task group); a supervised task's error is kept for whoever :meth:`SimTask.join`\\ s it.
        """
        if self._tg is None:
            raise RuntimeError("spawn() needs a running kernel")
        task = SimTask(self, name)
        self._tasks[id(task)] = task
        self._ready.append(task)
        task.waiting_on = "ready"
        self._tg.start_soon(self._task_main, task, fn, args, supervised, name=name)
        return task

    async def _task_main(
        self,
        task: SimTask,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        supervised: bool,
    ) -> None:
        await task._resume.wait()
        task.waiting_on = "running"
        try:
            if task._cancel_pending:
                task._cancel_pending = False
                raise SimCancelled(task.name)
            task.result = await fn(*args)
        except SimCancelled as exc:
            task.error = exc
        except Exception as exc:
            task.error = exc
            if not supervised and self._failure is None:
                self._failure = exc
        finally:
            task.done = True
            task.waiting_on = "done"
            del self._tasks[id(task)]
            task.finished.set()
            if self._current is task:
                if self._failure is not None or task is self._main:
                    self._current = None
                    self._idle.set()
                else:
                    self._dispatch()

    @property
    def current(self) -> SimTask | None:
        return self._current

    # -- primitives ---------------------------------------------------------------------

    async def sleep(self, ms: int) -> None:
        """Advance this task by ``ms`` virtual milliseconds (0 yields to other ready tasks)."""
        task = self._current
        if task is None:
            raise RuntimeError("kernel.sleep() used outside a simulated task")
        if ms <= 0:
            self._make_ready(task)
            await self._block("ready")
            return
        self._seq += 1
        heapq.heappush(self._timers, (self.now_ms + int(ms), self._seq, task))
        await self._block(f"sleep until {self.now_ms + int(ms)}")

    async def io(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run real I/O outside the simulation; this task resumes after it completes."""
        task = self._current
        if task is None or self._tg is None:
            raise RuntimeError("kernel.io() used outside a simulated task")
        job = _IOJob(task)
        self._io.append(job)
        self._tg.start_soon(self._run_io, job, fn, args)
        await self._block("io")  # a cancellation arriving now is raised at the next block
        if job.error is not None:
            raise job.error
        return job.result

    async def wait_deferred(self, flush: Callable[[], Awaitable[None]]) -> None:
        """Block until the driver has called ``flush()`` for I/O this task queued itself.

        For stores with their own queue (group commit): a whole virtual instant's writes
        are queued first and then committed together by one ``flush``.
        """
        task = self._current
        if task is None:
            raise RuntimeError("kernel.wait_deferred() used outside a simulated task")
        self._io.append(_IOJob(task, flush))
        await self._block("io")

    @staticmethod
    async def _run_io(
        job: _IOJob, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]
    ) -> None:
        try:
            job.result = await fn(*args)
        except Exception as exc:
            job.error = exc
        finally:
            job.done.set()


class SimEvent:
    """A one-shot event for simulated tasks."""

    __slots__ = ("_kernel", "_waiters", "is_set")

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel
        self._waiters: list[SimTask] = []
        self.is_set = False

    def set(self) -> None:
        if self.is_set:
            return
        self.is_set = True
        waiters, self._waiters = self._waiters, []
        for task in waiters:
            self._kernel._wake(task)

    async def wait(self) -> None:
        if self.is_set:
            return
        task = self._kernel.current
        if task is None:
            raise RuntimeError("SimEvent.wait() used outside a simulated task")
        self._waiters.append(task)
        try:
            await self._kernel._block("event")
        finally:
            if task in self._waiters:
                self._waiters.remove(task)


class Mailbox:
    """An unbounded FIFO between simulated tasks, backed by an anyio memory object stream.

    ``depth`` is observable; :meth:`receive` blocks through the kernel, so a waiting
    receiver is known to the scheduler.
    """

    def __init__(self, kernel: Kernel, name: str) -> None:
        self._kernel = kernel
        self.name = name
        self._send, self._receive = anyio.create_memory_object_stream[Any](math.inf)
        self._receiver: SimTask | None = None

    @property
    def depth(self) -> int:
        return self._send.statistics().current_buffer_used

    def put(self, item: Any) -> None:
        self._send.send_nowait(item)
        if self._receiver is not None:
            receiver, self._receiver = self._receiver, None
            self._kernel._wake(receiver)

    async def receive(self) -> Any:
        while True:
            try:
                return self._receive.receive_nowait()
            except anyio.WouldBlock:
                task = self._kernel.current
                if task is None:
                    raise RuntimeError("Mailbox.receive() used outside a simulated task") from None
                self._receiver = task
                try:
                    await self._kernel._block(f"mailbox {self.name}")
                finally:
                    if self._receiver is task:
                        self._receiver = None

    def drain(self) -> list[Any]:
        """Take every queued item without blocking."""
        items = []
        while True:
            try:
                items.append(self._receive.receive_nowait())
            except anyio.WouldBlock:
                return items

    def close(self) -> None:
        self._send.close()
        self._receive.close()
