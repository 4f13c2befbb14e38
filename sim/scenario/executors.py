"""Where explore's jobs run: this process, worker processes, or a Dask cluster.

An executor maps a picklable, module-level function over jobs and yields ``(index,
result)`` pairs as jobs finish, in whatever order they finish; explore orders what it
keeps by seed, so its report does not depend on the executor or on ``--jobs``. Jobs are
taken from the iterable lazily, with a bounded number in flight, so ten million seeds are
never materialised at once. Closing an executor (or abandoning the iteration) cancels the
jobs not yet started and waits for the running ones.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Protocol, TypeVar

J = TypeVar("J")
R = TypeVar("R")

#: Jobs in flight per worker: enough to keep each busy while results travel back.
IN_FLIGHT_PER_WORKER = 2


class Executor(Protocol):
    """Runs jobs somewhere; see the module docstring."""

    #: How many jobs run at once (explore sizes its batches by it).
    workers: int

    def describe(self) -> str:
        """Where the jobs run, for the report's ``run`` section and messages."""
        ...

    def map(self, fn: Callable[[J], R], jobs: Iterable[J]) -> Iterator[tuple[int, R]]:
        """``(index, fn(job))`` for every job, as each finishes."""
        ...

    def close(self) -> None:
        """Release the workers; cancel what has not started."""
        ...


def cores() -> int:
    """The cores this process may run on (the default for ``--jobs``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class InProcess:
    """Runs each job here, one after the other (``--jobs 1``)."""

    workers = 1

    def describe(self) -> str:
        return "this process"

    def map(self, fn: Callable[[J], R], jobs: Iterable[J]) -> Iterator[tuple[int, R]]:
        for i, job in enumerate(jobs):
            yield i, fn(job)

    def close(self) -> None:
        return None


def _ignore_sigint() -> None:
    # Ctrl-C in a terminal reaches the whole process group: the parent decides when to
    # stop (after the batches in flight), the workers must not die mid-batch.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Processes:
    """``jobs`` worker processes on this machine (``--jobs N``).

    Workers come from a fork server that has already imported the simulator (fast to
    start, and no fork of a process running threads); jobs and results travel pickled.
    """

    def __init__(self, jobs: int) -> None:
        self.workers = jobs
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else None
        context = multiprocessing.get_context(method or "spawn")
        if method:
            context.set_forkserver_preload(["sim.scenario.batches"])
        self._pool = ProcessPoolExecutor(
            max_workers=jobs, mp_context=context, initializer=_ignore_sigint
        )

    def describe(self) -> str:
        return f"{self.workers} worker processes"

    def map(self, fn: Callable[[J], R], jobs: Iterable[J]) -> Iterator[tuple[int, R]]:
        pending: dict[Future[R], int] = {}
        queue = enumerate(jobs)
        limit = self.workers * IN_FLIGHT_PER_WORKER
        try:
            while True:
                for i, job in queue:
                    pending[self._pool.submit(fn, job)] = i
                    if len(pending) >= limit:
                        break
                if not pending:
                    return
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=pending.__getitem__):
                    yield pending.pop(future), future.result()
        finally:
            for future in pending:
                future.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


__all__ = ["IN_FLIGHT_PER_WORKER", "Executor", "InProcess", "Processes", "cores"]
