"""Explore on a Dask cluster: ``turnsim explore --scheduler tcp://HOST:PORT``.

The jobs are the same picklable values and module-level functions the worker processes
run (:mod:`sim.scenario.batches`): each carries its scenario's text, so a worker needs
turnsim installed (the same version) but no copy of the scenario files. The only module
that imports Dask (the optional ``turnsim[cluster]`` extra).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from sim.scenario.executors import IN_FLIGHT_PER_WORKER

J = TypeVar("J")
R = TypeVar("R")

#: How long to wait for the scheduler before saying it cannot be reached.
CONNECT_TIMEOUT_S = 10


class ClusterError(RuntimeError):
    """The scheduler cannot be reached or has no workers (one line, with the fix)."""


def _check_reachable(address: str, timeout_s: float) -> None:
    """Fail at once on a refused ``tcp://`` address (Dask itself retries until its timeout)."""
    match = re.fullmatch(r"tcp://\[?([^\]]+?)\]?:(\d+)", address.strip())
    if match is None:
        if address.startswith("tcp://"):
            raise ClusterError(f"--scheduler {address!r}: expected tcp://HOST:PORT")
        return  # another transport: left to Dask
    try:
        with socket.create_connection((match[1], int(match[2])), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {address} ({exc.strerror or exc}); start one "
            "with `dask scheduler` and workers with `dask worker ADDRESS`, or use --jobs"
        ) from None


def _dask() -> Any:
    try:
        import distributed
    except ImportError:
        raise ImportError(
            "--scheduler needs Dask distributed: pip install 'turnsim[cluster]'"
        ) from None
    return distributed


class DaskExecutor:
    """Sends jobs to the workers of the Dask scheduler at ``address``."""

    def __init__(self, address: str, *, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        distributed = _dask()
        self.address = address
        _check_reachable(address, timeout_s)
        try:
            self._client = distributed.Client(
                address, timeout=f"{timeout_s}s", set_as_default=False
            )
        except (OSError, TimeoutError, ValueError) as exc:
            raise ClusterError(
                f"cannot reach the Dask scheduler at {address} ({exc}); start one with "
                "`dask scheduler` and workers with `dask worker ADDRESS`, or use --jobs"
            ) from None
        threads = sum(self._client.nthreads().values())
        if threads == 0:
            self._client.close()
            raise ClusterError(
                f"the Dask scheduler at {address} has no workers; start some with "
                f"`dask worker {address}`"
            )
        self.workers = threads

    def describe(self) -> str:
        return f"Dask scheduler {self.address} ({self.workers} worker threads)"

    def map(self, fn: Callable[[J], R], jobs: Iterable[J]) -> Iterator[tuple[int, R]]:
        distributed = _dask()
        queue = enumerate(jobs)
        index: dict[str, int] = {}
        limit = self.workers * IN_FLIGHT_PER_WORKER

        def submit() -> Any:
            for i, job in queue:
                future = self._client.submit(fn, job, pure=False)
                index[future.key] = i
                return future
            return None

        running = distributed.as_completed(loop=self._client.loop)
        futures = []
        try:
            while len(index) < limit and (future := submit()) is not None:
                running.add(future)
                futures.append(future)
            for future in running:
                result = future.result()
                yield index.pop(future.key), result
                futures.remove(future)
                following = submit()
                if following is not None:
                    running.add(following)
                    futures.append(following)
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        self._client.close()


__all__ = ["ClusterError", "DaskExecutor"]
