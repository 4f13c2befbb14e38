"""The deterministic scheduler: virtual time, seeded interleavings, cancellation, stalls."""

from __future__ import annotations

import random

import anyio
import pytest

from sim.runtime.kernel import Kernel, Mailbox, SimCancelled, SimEvent, SimulationStalled

pytestmark = pytest.mark.anyio


async def _interleaving(seed: int) -> list[tuple[int, str, int]]:
    kernel = Kernel(random.Random(f"{seed}/schedule"))
    log: list[tuple[int, str, int]] = []

    async def worker(name: str, delay: int) -> None:
        for i in range(4):
            await kernel.sleep(delay)
            log.append((kernel.now_ms, name, i))
            await kernel.io(anyio.sleep, 0)  # real I/O costs no virtual time

    async def main() -> None:
        tasks = [kernel.spawn(worker, n, 10, name=n) for n in "abcd"]
        for t in tasks:
            await t.join()

    await kernel.run(main)
    return log


async def test_virtual_time_costs_no_wall_time() -> None:
    kernel = Kernel(random.Random("1/schedule"))

    async def main() -> int:
        await kernel.sleep(3_600_000)  # an hour of virtual time
        return kernel.now_ms

    with anyio.fail_after(5):
        assert await kernel.run(main) == 3_600_000


async def test_same_seed_same_interleaving_and_seeds_differ() -> None:
    first = await _interleaving(1)
    assert first == await _interleaving(1)
    others = [await _interleaving(s) for s in range(2, 12)]
    assert any(o != first for o in others), "the seed must decide simultaneous ordering"
    assert all(sorted(o) == sorted(first) for o in others), "only the order may differ"


def test_interleaving_is_identical_on_both_backends() -> None:
    runs = [anyio.run(_interleaving, 3, backend=b) for b in ("asyncio", "trio")]
    assert runs[0] == runs[1]


async def test_mailbox_is_fifo_and_depth_is_observable() -> None:
    kernel = Kernel(random.Random("1/schedule"))
    box = Mailbox(kernel, "m")

    async def main() -> list[int]:
        for i in range(5):
            box.put(i)
        assert box.depth == 5
        return [await box.receive() for _ in range(5)]

    assert await kernel.run(main) == [0, 1, 2, 3, 4]


async def test_cancel_raises_at_the_blocking_point_and_task_can_clean_up() -> None:
    kernel = Kernel(random.Random("1/schedule"))
    seen: list[str] = []

    async def sleeper() -> None:
        try:
            await kernel.sleep(10_000)
        except SimCancelled:
            seen.append(f"cancelled at {kernel.now_ms}")
            await kernel.sleep(5)  # cleanup may still block once
            seen.append(f"cleaned at {kernel.now_ms}")
            raise

    async def main() -> None:
        task = kernel.spawn(sleeper, name="s", supervised=True)
        await kernel.sleep(100)
        task.cancel()
        await task.finished.wait()

    await kernel.run(main)
    assert seen == ["cancelled at 100", "cleaned at 105"]


async def test_stall_is_reported_with_the_blocked_tasks() -> None:
    kernel = Kernel(random.Random("1/schedule"))

    async def main() -> None:
        await SimEvent(kernel).wait()  # nobody will ever set it

    with pytest.raises(SimulationStalled, match="main waiting on event"):
        await kernel.run(main)


async def test_unsupervised_crash_stops_the_run() -> None:
    kernel = Kernel(random.Random("1/schedule"))

    async def boom() -> None:
        await kernel.sleep(1)
        raise RuntimeError("actor exploded")

    async def main() -> None:
        kernel.spawn(boom, name="boom")
        await kernel.sleep(1_000)

    with pytest.raises(RuntimeError, match="actor exploded"):
        await kernel.run(main)
