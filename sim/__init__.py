"""turnsim: a deterministic simulator of a chat server's per-turn runtime and persistence.

The public surface for Python users (imported lazily, so ``import persisters.model`` stays light
and free of import cycles)::

    from sim import World, Profile, ProfileRegistry, build
    from persisters.sqlite_store import SQLiteTurnStore
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "World": "sim.runtime.world",
    "Profile": "sim.runtime.profiles",
    "ProfileRegistry": "sim.runtime.profiles",
    "default_profiles": "sim.runtime.profiles",
    "build": "sim.runtime.variants",
    "VARIANTS": "sim.runtime.variants",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sim' has no attribute {name!r}")
