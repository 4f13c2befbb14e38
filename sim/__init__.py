"""turnsim: a deterministic simulator of a chat server's per-turn runtime and persistence.

The public surface for Python users::

    from sim import World, Profile, ProfileRegistry, build
    from persisters.sqlite_store import SQLiteTurnStore
"""

from sim.profiles import Profile, ProfileRegistry, default_profiles
from sim.variants import VARIANTS, build
from sim.world import World

__all__ = ["VARIANTS", "Profile", "ProfileRegistry", "World", "build", "default_profiles"]
