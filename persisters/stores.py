"""Which store a spec names: the one way every command chooses and opens a TurnStore.

A *store spec* is the text a user gives ``--store``:

* ``sqlite`` — an embedded SQLite file (a temporary one unless a path is given);
* ``memory`` — the in-memory reference store (nothing is kept after the run);
* ``normalized`` — a SQLite file in the real server's normalized layout (``turns``,
  ``blocks``, ``turn_block_membership``, the index in ``timeline_conversations``).

Other kinds (server DSNs, plug-in factories) are added here, so every command that takes
``--store`` accepts them at once. :func:`open_database` opens an existing file with the
store of whichever layout it holds (for commands that read a file: ``serve``).
"""

from __future__ import annotations

import os

import anyio
import anyio.to_thread
import attrs

from persisters.errors import SchemaError, TurnsimError
from persisters.memory_store import MemoryTurnStore
from persisters.normalized_schema import layout_of
from persisters.normalized_store import open_normalized_store
from persisters.sqlite_database import connect
from persisters.sqlite_store import SQLiteTurnStore
from persisters.store import ConflictPolicy, TurnStore, refuse_rewrite

#: The kinds a spec may name, with what each one is (for help texts and errors).
KINDS: dict[str, str] = {
    "sqlite": "an embedded SQLite file (temporary unless --db names one)",
    "memory": "the in-memory reference store (nothing is kept)",
    "normalized": "a SQLite file in the real server's normalized layout (turns, blocks, "
    "membership; temporary unless --db names one)",
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
        """Open the store; ``path`` is the SQLite file (required but for ``memory``)."""
        if self.kind == "memory":
            return MemoryTurnStore(on_conflict=on_conflict)
        if path is None:
            raise StoreSpecError("a SQLite store needs a file path")
        if self.kind == "normalized":
            return await open_normalized_store(
                path, on_conflict=on_conflict, check_integrity=check_integrity
            )
        return await SQLiteTurnStore.open(
            path, on_conflict=on_conflict, check_integrity=check_integrity
        )


#: The default store: an embedded SQLite file.
SQLITE = StoreSpec("sqlite")


def _tables(path: str) -> set[str]:
    conn = connect(path, read_only=True, tune=False)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()


async def open_database(
    path: str | os.PathLike[str],
    *,
    read_only: bool = False,
    timeline_path: str | os.PathLike[str] | None = None,
) -> TurnStore:
    """Open an existing database file with the store of the layout it holds.

    A file of the real server's layout (``blocks`` / ``turn_block_membership``), or any
    file when ``timeline_path`` names a timeline database, opens as the normalized store;
    any other as turnsim's SQLite store. Raises what those raise (a missing file, not
    SQLite, read-only and in need of ``turnsim db migrate``).
    """
    name = os.fspath(path)
    found = await anyio.to_thread.run_sync(_tables, name) if os.path.exists(name) else set()
    layout = layout_of(found)
    if layout is not None and layout.name == "timeline" and timeline_path is None:
        raise SchemaError(
            f"{name}: holds only a conversation index (a timeline database of the real "
            f"layout); open its turn database with this one as the timeline database "
            f"(turnsim serve --db TURNS.db --timeline {name})"
        )
    if timeline_path is not None or (layout is not None and layout.name != "turnsim"):
        return await open_normalized_store(name, timeline_path, read_only=read_only)
    return await SQLiteTurnStore.open(name, read_only=read_only)
