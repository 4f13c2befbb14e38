"""One seed decides a whole run: named random streams and the id source.

Each purpose draws from its own stream, derived from the seed *plus a name*
(``"<seed>/<name>"``), so adding a draw in one place never shifts the draws of another.
``random.Random`` seeded with a string hashes it with SHA-512: stable across processes
and independent of ``PYTHONHASHSEED``.
"""

from __future__ import annotations

import random
import uuid


class RandomStreams:
    """Named, independent random streams derived from one seed."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._streams: dict[str, random.Random] = {}

    def stream(self, name: str) -> random.Random:
        rng = self._streams.get(name)
        if rng is None:
            rng = self._streams[name] = random.Random(f"{self.seed}/{name}")
        return rng


class IdSource:
    """Deterministic UUID-shaped ids, one stream per kind and scope (e.g. per conversation)."""

    def __init__(self, streams: RandomStreams) -> None:
        self._streams = streams

    def new(self, kind: str, scope: str) -> str:
        rng = self._streams.stream(f"ids/{kind}/{scope}")
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
