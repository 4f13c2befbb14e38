"""Runtime behaviours a bug variant may substitute that are not pipeline stages: how a turn
id is minted and how the engine waits for a phase's snapshot write.

Each is a plain function with one signature per kind, like the pipelines' stages; the
correct one is the default of :class:`sim.runtime.variants.Parts` and a variant swaps in
another (``docs/bugs.md``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from persisters.model import POST_TOOLS
from sim.runtime.kernel import Kernel, SimTask
from sim.seeding import IdSource

#: Every flush of the timer-batched writer (bug variant ``timer-batched-snapshots``)
#: happens at a multiple of this many virtual ms.
FLUSH_EVERY_MS = 200


class IdEnv(Protocol):
    """What minting a turn id may use: the seeded id source (it outlives a server restart,
    as the operating system's entropy does) and the server process's in-memory counters
    (fresh at every boot)."""

    ids: IdSource
    counters: dict[str, int]


def seeded_turn_id(env: IdEnv, conv_id: str) -> str:
    """A fresh UUID-shaped id from the seed: never repeats, across restarts included."""
    return env.ids.new("turn", conv_id)


def counter_turn_id(env: IdEnv, conv_id: str) -> str:
    """BUG VARIANT ``restart-id-counter``: ``turn-<n>`` from an in-memory counter per
    conversation, which starts at 1 again when the server restarts (pinocchio #202)."""
    n = env.counters.get(conv_id, 0) + 1
    env.counters[conv_id] = n
    return f"turn-{n}"


TurnIds = Callable[[IdEnv, str], str]


class WriteEnv(Protocol):
    """What a write policy may use: the kernel (background tasks) and virtual time."""

    kernel: Kernel

    def now_ms(self) -> int: ...

    async def sleep(self, ms: int) -> None: ...


Write = Callable[[], Awaitable[None]]
#: ``policy(env, phase, write, pending)``: run or schedule one phase's snapshot write; a
#: write left running in the background is appended to ``pending`` (the inference joins it).
WritePolicy = Callable[[WriteEnv, str, Write, list[SimTask]], Awaitable[None]]


async def awaited_writes(env: WriteEnv, phase: str, write: Write, pending: list[SimTask]) -> None:
    """The engine goes on only once the phase's snapshot is durable (stored, or its failure
    surfaced): durable before advance."""
    await write()


async def unawaited_tool_writes(
    env: WriteEnv, phase: str, write: Write, pending: list[SimTask]
) -> None:
    """BUG VARIANT ``advance-before-durable``: a tool round's snapshot is written in the
    background and the engine starts the next model call at once (openai-agents-python
    #4615)."""
    if phase != POST_TOOLS:
        await write()
        return
    pending.append(env.kernel.spawn(write, name=f"write/{phase}", supervised=True))


async def timer_batched_writes(
    env: WriteEnv, phase: str, write: Write, pending: list[SimTask]
) -> None:
    """BUG VARIANT ``timer-batched-snapshots``: snapshots wait for the batch timer's next
    flush (every :data:`FLUSH_EVERY_MS`) in the background (pinocchio 2e7899f7)."""

    async def at_next_flush() -> None:
        await env.sleep(FLUSH_EVERY_MS - env.now_ms() % FLUSH_EVERY_MS)
        await write()

    pending.append(env.kernel.spawn(at_next_flush, name=f"write/{phase}", supervised=True))


#: How a scheduled event (a reminder) reaches its conversation: ``actor``, through the
#: conversation's mailbox like any message (its lock); ``direct``, the scheduler runs it
#: itself (bug variant ``unlocked-scheduled-events``).
SCHEDULED_DELIVERIES = ("actor", "direct")
