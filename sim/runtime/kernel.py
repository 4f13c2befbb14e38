"""A deterministic scheduler for simulated actors, driven from one anyio task.

Simulated tasks are plain coroutines that the kernel steps itself (``coro.send``), one at
a time. A task runs until it blocks on a kernel primitive (:meth:`Kernel.sleep`,
:class:`SimEvent`, :class:`Mailbox`, :meth:`Kernel.io`); the kernel then picks the next
ready task with the seeded ``schedule`` stream. The event loop never decides an
interleaving, so one seed gives one run, byte for byte, on asyncio and on trio — and a
switch between simulated tasks costs a function call, not an event-loop round trip.

Time is virtual: when nothing is ready, the kernel first performs the outstanding real
I/O (store saves, from the driver's anyio task; it costs no virtual time) and resumes the
waiting tasks in submission order; only then does the clock jump to the next timer.
Saves submitted at the same virtual instant are outstanding together, which is what lets
the store's group commit batch them.

Simulated code must await only kernel primitives (the world routes store calls through
:meth:`Kernel.io`); awaiting anything else inside a simulated task is an error.
"""

from __future__ import annotations

import gc
import heapq
import random
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import anyio


class SimCancelled(BaseException):
    """Raised inside a simulated task that was cancelled with :meth:`SimTask.cancel`.

    A BaseException so that ``except Exception`` does not swallow it.
    """


class SimulationStalled(RuntimeError):
    """No task can ever run again while the main task is still waiting."""


class _Trap:
    """What a blocked task yields to the kernel: why it waits.

    Its own one-step iterator (no generator object per wait: with 10,000 conversations
    blocked at once that is megabytes). Having no ``throw``, a cancellation the kernel
    throws into the task is raised right at the ``await``.
    """

    __slots__ = ("_yielded", "what")

    def __init__(self, what: str) -> None:
        self.what = what
        self._yielded = False

    def __await__(self) -> _Trap:
        return self

    def __iter__(self) -> _Trap:
        return self

    def __next__(self) -> _Trap:
        if self._yielded:
            raise StopIteration
        self._yielded = True
        return self


class SimTask:
    """A simulated task: a coroutine the kernel steps when it is ready."""

    __slots__ = (
        "_cancel_pending",
        "_coro",
        "_from_io",
        "done",
        "error",
        "finished",
        "kernel",
        "name",
        "result",
        "supervised",
        "waiting_on",
    )

    def __init__(
        self, kernel: Kernel, name: str, coro: Coroutine[Any, Any, Any], supervised: bool
    ) -> None:
        self.kernel = kernel
        self.name = name
        self._coro = coro
        self._cancel_pending = False
        self._from_io = False
        self.supervised = supervised
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.waiting_on = "ready"
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
    __slots__ = ("error", "flush", "fn", "result", "task")

    def __init__(
        self,
        task: SimTask,
        fn: Callable[[], Awaitable[Any]] | None,
        flush: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.task = task
        self.fn = fn
        self.flush = flush  # deferred I/O: completed by the store's own flush()
        self.result: Any = None
        self.error: BaseException | None = None

    async def run(self) -> None:
        try:
            self.result = await self.fn()  # type: ignore[misc]
        except Exception as exc:
            self.error = exc


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
        self._tasks: dict[int, SimTask] = {}
        self._failure: BaseException | None = None
        self._running = False
        self.switches = 0

    # -- running ------------------------------------------------------------------------

    async def run(self, main: Callable[..., Awaitable[Any]], *args: Any, name: str = "main") -> Any:
        """Run ``main`` as a simulated task until it returns; then cancel every other task.

        Returns main's result or raises its error. Raises :class:`SimulationStalled` if
        main can never be resumed, and the error of any unsupervised task that failed.
        """
        if self._running:
            raise RuntimeError("this kernel is already running")
        self._running = True
        main_task = self.spawn(main, *args, name=name, supervised=True)
        # Every live actor is traversed on each collection, so the default thresholds make
        # cost grow with the number of conversations; collect far less often during a run.
        thresholds = gc.get_threshold()
        gc.set_threshold(100_000, 50, 1_000)
        try:
            await self._drive(lambda: main_task.done)
        finally:
            await self._shutdown()
            gc.set_threshold(*thresholds)
            self._running = False
        if main_task.error is not None:
            raise main_task.error
        return main_task.result

    async def _drive(self, finished: Callable[[], bool]) -> None:
        while True:
            while self._ready and not finished():
                n = len(self._ready)
                i = self._rng.randrange(n) if n > 1 else 0
                task = self._ready[i]
                self._ready[i] = self._ready[-1]
                self._ready.pop()
                self._step(task)
                if self._failure is not None:
                    failure, self._failure = self._failure, None
                    raise failure
            if finished():
                return
            if self._io:
                await self._complete_io()
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

    async def _complete_io(self) -> None:
        """Perform every outstanding I/O, then resume the waiters in submission order."""
        jobs = list(self._io)
        self._io.clear()
        for flush in dict.fromkeys(j.flush for j in jobs if j.flush is not None):
            await flush()
        direct = [j for j in jobs if j.fn is not None]
        if len(direct) == 1:
            await direct[0].run()
        elif direct:
            async with anyio.create_task_group() as tg:
                for job in direct:
                    tg.start_soon(job.run)
        for job in jobs:
            job.task._from_io = True  # its I/O happened: let it see the outcome first
            self._make_ready(job.task)

    async def _shutdown(self) -> None:
        """Cancel whatever still runs and let it unwind (deterministically, bounded)."""
        for _ in range(3):
            alive = list(self._tasks.values())
            if not alive:
                return
            for task in alive:
                task.cancel()
            try:
                with anyio.move_on_after(5):
                    await self._drive(lambda: not self._tasks)
            except (SimulationStalled, Exception):
                pass
        for task in list(self._tasks.values()):  # could not unwind: close without running
            self._finish(task, None, SimCancelled(task.name))
            task._coro.close()

    def _step(self, task: SimTask) -> None:
        """Run one task until it blocks or ends."""
        self._current = task
        task.waiting_on = "running"
        self.switches += 1
        try:
            if task._cancel_pending and not task._from_io:
                task._cancel_pending = False
                trap = task._coro.throw(SimCancelled(task.name))
            else:
                task._from_io = False
                trap = task._coro.send(None)
        except StopIteration as stop:
            self._finish(task, stop.value, None)
        except SimCancelled as exc:
            self._finish(task, None, exc)
        except Exception as exc:
            self._finish(task, None, exc)
            if not task.supervised and self._failure is None:
                self._failure = exc
        else:
            if not isinstance(trap, _Trap):
                error = RuntimeError(
                    f"simulated task {task.name!r} awaited {trap!r}; simulated code may only "
                    "await kernel primitives (route real I/O through Kernel.io)"
                )
                task._coro.close()
                self._finish(task, None, error)
                if self._failure is None:
                    self._failure = error
            else:
                task.waiting_on = trap.what
                if trap.what == "ready":
                    self._ready.append(task)
        finally:
            self._current = None

    def _finish(self, task: SimTask, result: Any, error: BaseException | None) -> None:
        task.done = True
        task.result = result
        task.error = error
        task.waiting_on = "done"
        self._tasks.pop(id(task), None)
        task.finished.set()

    def _make_ready(self, task: SimTask) -> None:
        if task.waiting_on != "ready" and not task.done:
            task.waiting_on = "ready"
            self._ready.append(task)

    def _wake(self, task: SimTask) -> None:
        """Make a blocked task ready (events, mailboxes, cancellation)."""
        what = task.waiting_on
        if task.done or what in ("ready", "running", "io"):
            return  # I/O completes first; a cancellation is seen at the next block
        if what.startswith("sleep"):
            self._timers = [t for t in self._timers if t[2] is not task]
            heapq.heapify(self._timers)
        self._make_ready(task)

    def _check_cancel(self, task: SimTask) -> None:
        if task._cancel_pending:
            task._cancel_pending = False
            raise SimCancelled(task.name)

    def _task(self) -> SimTask:
        task = self._current
        if task is None:
            raise RuntimeError("kernel primitive used outside a simulated task")
        return task

    # -- tasks --------------------------------------------------------------------------

    def spawn(
        self, fn: Callable[..., Awaitable[Any]], *args: Any, name: str, supervised: bool = False
    ) -> SimTask:
        """Start a simulated task; it first runs when the kernel picks it.

        An unsupervised task's error stops the whole simulation; a supervised task's
        error is kept for whoever :meth:`SimTask.join`\\ s it.
        """
        task = SimTask(self, name, fn(*args), supervised)  # type: ignore[arg-type]
        self._tasks[id(task)] = task
        self._ready.append(task)
        return task

    @property
    def current(self) -> SimTask | None:
        return self._current

    # -- primitives ---------------------------------------------------------------------

    def _block(self, what: str) -> _Trap:
        """Await the result to block until woken; a pending cancellation raises now.

        A cancellation that arrives while the task waits is thrown in by :meth:`_step` at
        the ``await`` (plain functions returning the trap: no coroutine frame per wait).
        """
        self._check_cancel(self._task())
        return _Trap(what)

    def sleep(self, ms: int) -> _Trap:
        """Await the result to advance this task by ``ms`` virtual milliseconds.

        ``ms <= 0`` yields to the other ready tasks.
        """
        task = self._task()
        self._check_cancel(task)
        if ms <= 0:
            return _Trap("ready")
        self._seq += 1
        wake = self.now_ms + int(ms)
        heapq.heappush(self._timers, (wake, self._seq, task))
        return _Trap(f"sleep until {wake}")

    async def io(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run real I/O outside the simulation; this task resumes after it completes."""
        task = self._task()
        job = _IOJob(task, lambda: fn(*args))
        self._io.append(job)
        await _Trap("io")
        if job.error is not None:
            raise job.error
        return job.result

    async def wait_deferred(self, flush: Callable[[], Awaitable[None]]) -> None:
        """Block until the driver has called ``flush()`` for I/O this task queued itself.

        For stores with their own queue (group commit): a whole virtual instant's writes
        are queued first and then committed together by one ``flush``.
        """
        task = self._task()
        self._io.append(_IOJob(task, None, flush))
        await _Trap("io")


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
        task = self._kernel._task()
        self._waiters.append(task)
        try:
            await self._kernel._block("event")
        finally:
            if task in self._waiters:
                self._waiters.remove(task)


class Mailbox:
    """An unbounded FIFO between simulated tasks.

    The kernel does the blocking itself, so a waiting receiver is known to the scheduler.
    ``depth`` is observable. Items live in a plain list: a mailbox holds a command or two
    at a time, an empty list costs 56 bytes where a deque costs ~760 and an anyio memory
    object stream pair ~2 KB, and every conversation has two mailboxes
    (docs/performance.md).
    """

    __slots__ = ("_items", "_kernel", "_receiver", "name")

    def __init__(self, kernel: Kernel, name: str) -> None:
        self._kernel = kernel
        self.name = name
        self._items: list[Any] = []
        self._receiver: SimTask | None = None

    @property
    def depth(self) -> int:
        return len(self._items)

    def drain(self) -> list[Any]:
        """Take every item waiting, in order (what a dying process loses)."""
        items, self._items = self._items, []
        return items

    def put(self, item: Any) -> None:
        self._items.append(item)
        if self._receiver is not None:
            receiver, self._receiver = self._receiver, None
            self._kernel._wake(receiver)

    async def receive(self) -> Any:
        while True:
            if self._items:
                return self._items.pop(0)
            task = self._kernel._task()
            self._receiver = task
            try:
                await self._kernel._block(f"mailbox {self.name}")
            finally:
                if self._receiver is task:
                    self._receiver = None
