"""Which store a spec names: the one way every command chooses and opens a TurnStore.

A *store spec* is the text a user gives ``--store``:

* ``sqlite`` — an embedded SQLite file (a temporary one unless a path is given);
* ``memory`` — the in-memory reference store (nothing is kept after the run).

Other kinds (server DSNs, plug-in factories) are added here, so every command that takes
``--store`` accepts them at once.
"""

from __future__ import annotations

import os

import attrs

from persisters.errors import TurnsimError
from persisters.memory_store import MemoryTurnStore
from persisters.sqlite_store import SQLiteTurnStore
from persisters.store import ConflictPolicy, TurnStore, refuse_rewrite

#: The kinds a spec may name, with what each one is (for help texts and errors).
KINDS: dict[str, str] = {
    "sqlite": "an embedded SQLite file (temporary unless --db names one)",
    "memory": "the in-memory reference store (nothing is kept)",
}


class StoreSpecError(TurnsimError):
    """A store spec that names no store turnsim can open."""


@attrs.frozen
class StoreSpec:
    """A parsed ``--store`` value: which kind of store, and where (a path, for SQLite)."""

    kind: str
    target: str = ""

    @classmethod
    def parse(cls, text: str) -> StoreSpec:
        """Parse a spec; raises :class:`StoreSpecError` saying what is accepted."""
        kind = text.strip()
        if kind in KINDS:
            return cls(kind)
        accepted = ", ".join(KINDS)
        raise StoreSpecError(f"--store {text!r} names no store; use one of: {accepted}")

    @property
    def keeps_data(self) -> bool:
        """Whether what is written outlives the process (a file or a server)."""
        return self.kind != "memory"

    async def open(
        self,
        *,
        path: str | os.PathLike[str] | None = None,
        on_conflict: ConflictPolicy = refuse_rewrite,
        check_integrity: bool = False,
    ) -> TurnStore:
        """Open the store; ``path`` is the SQLite file (required for ``sqlite``)."""
        if self.kind == "memory":
            return MemoryTurnStore(on_conflict=on_conflict)
        if path is None:
            raise StoreSpecError("a SQLite store needs a file path")
        return await SQLiteTurnStore.open(
            path, on_conflict=on_conflict, check_integrity=check_integrity
        )


#: The default store: an embedded SQLite file.
SQLITE = StoreSpec("sqlite")
