"""Which store a spec names: the one way every command chooses and opens a TurnStore.

A *store spec* is the text a user gives ``--store`` (and, for a server, ``serve --db`` and
``db doctor``):

* ``sqlite`` — an embedded SQLite file (a temporary one unless a path is given);
* ``memory`` — the in-memory reference store (nothing is kept after the run);
* ``normalized`` — a SQLite file in the real server's normalized layout (``turns``,
  ``blocks``, ``turn_block_membership``, the index in ``timeline_conversations``);
* ``postgresql://[user@]host[:port]/database[?schema=NAME]`` — a PostgreSQL server;
* ``mysql://[user[:password]@]host[:port]/database`` (or ``mariadb://``) — MySQL/MariaDB;
* ``module:factory`` — a store of your own: ``module`` is imported (the current directory
  first on the path) and ``factory(on_conflict=...)`` called for each fresh store;
* ``NAME`` — a factory registered under the ``turnsim.stores`` entry point group.

A server spec names the server: a run on it (``run``, ``explore``) writes into a scratch
namespace of its own (a PostgreSQL schema, a MySQL database) that is dropped afterwards,
as a run's temporary SQLite file is, unless ``--db NAME`` keeps it under that name.
:meth:`StoreSpec.open_existing` opens the namespace the DSN itself names (for serving and
for the doctor).

:func:`open_database` opens an existing file with the store of whichever layout it
holds (for commands that read a file: ``serve``).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import os
import re
import sys
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
import attrs

from persisters.errors import SchemaError, TurnsimError
from persisters.memory_store import MemoryTurnStore
from persisters.mysql_store import SCHEMES as MYSQL_SCHEMES
from persisters.mysql_store import MySQLDialect, MySQLTurnStore
from persisters.normalized_schema import layout_of
from persisters.normalized_store import open_normalized_store
from persisters.postgres_store import SCHEMES as POSTGRES_SCHEMES
from persisters.postgres_store import PostgresDialect, PostgresTurnStore
from persisters.sqlite_database import connect
from persisters.sqlite_store import SQLiteTurnStore
from persisters.store import ConflictPolicy, TurnStore, refuse_rewrite

#: The entry point group a package registers its store factories in.
ENTRY_POINT_GROUP = "turnsim.stores"

#: The forms a spec may take, with what each one is (for help texts and errors).
KINDS: dict[str, str] = {
    "sqlite": "an embedded SQLite file (temporary unless --db names one)",
    "memory": "the in-memory reference store (nothing is kept)",
    "normalized": "a SQLite file in the real server's normalized layout (turns, blocks, "
    "membership; temporary unless --db names one)",
    "postgresql://HOST/DB": "PostgreSQL (a scratch schema per run unless --db names one)",
    "mysql://USER@HOST/DB": "MySQL/MariaDB (a scratch database per run unless --db names one)",
    "module:factory": "your own store: factory(on_conflict=...) returns a TurnStore",
    "NAME": f"a factory registered under the {ENTRY_POINT_GROUP!r} entry point group",
}

_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class StoreSpecError(TurnsimError):
    """A store spec that names no store turnsim can open."""


def registered_stores() -> dict[str, importlib.metadata.EntryPoint]:
    """Store factories registered under :data:`ENTRY_POINT_GROUP`, by name."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def load_factory(target: str) -> Callable[..., Any]:
    """The callable ``module:attr`` names (the current directory is importable first)."""
    module_name, _, attr = target.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)  # as `python -m` would: a module beside the user works
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise StoreSpecError(
            f"--store {target!r}: cannot import module {module_name!r} ({exc}); run from the "
            "directory that holds it, or install it"
        ) from None
    found: Any = module
    for part in attr.split("."):
        if not hasattr(found, part):
            raise StoreSpecError(f"--store {target!r}: module {module_name!r} has no {attr!r}")
        found = getattr(found, part)
    if not callable(found):
        raise StoreSpecError(f"--store {target!r}: {attr!r} is not callable (a store factory)")
    return found


def _takes_on_conflict(factory: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return True
    return "on_conflict" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


@attrs.frozen
class StoreSpec:
    """A parsed store spec: which kind of store (``sqlite``, ``memory``, ``postgresql``,
    ``mysql``, ``factory``, ``entry-point``), and its DSN or factory name."""

    kind: str
    target: str = ""

    @classmethod
    def parse(cls, text: str) -> StoreSpec:
        """Parse a spec; raises :class:`StoreSpecError` saying what is accepted."""
        spec = text.strip()
        if spec in ("sqlite", "memory", "normalized"):
            return cls(spec)
        if "://" in spec:
            scheme = spec.partition("://")[0].lower()
            if scheme in POSTGRES_SCHEMES:
                return cls("postgresql", spec)
            if scheme in MYSQL_SCHEMES:
                return cls("mysql", spec)
            raise StoreSpecError(
                f"--store: unknown scheme {scheme + '://'!r}; use postgresql:// or mysql://"
            )
        if _FACTORY.match(spec):
            return cls("factory", spec)
        if spec in registered_stores():
            return cls("entry-point", spec)
        registered = ", ".join(sorted(registered_stores())) or f"none in {ENTRY_POINT_GROUP!r}"
        raise StoreSpecError(
            f"--store {text!r} names no store; use one of: sqlite, memory, normalized, postgresql://HOST/DB,"
            f" mysql://USER@HOST/DB, module:factory, or a registered name ({registered})"
        )

    @property
    def is_server(self) -> bool:
        return self.kind in ("postgresql", "mysql")

    @property
    def takes_db(self) -> bool:
        """Whether ``--db`` means something: a SQLite file, or a server namespace to keep."""
        return self.kind in ("sqlite", "normalized") or self.is_server

    @property
    def keeps_data(self) -> bool:
        """Whether what is written outlives the process (a file or a server)."""
        return self.takes_db

    @property
    def label(self) -> str:
        """The spec for messages (a server DSN without its password)."""
        if self.is_server:
            return _redact(self.target)
        return self.target or self.kind

    def factory(self) -> Callable[..., Any]:
        """The user's store factory (``factory`` and ``entry-point`` specs)."""
        if self.kind == "entry-point":
            try:
                loaded = registered_stores()[self.target].load()
            except KeyError:
                raise StoreSpecError(f"no store {self.target!r} is registered") from None
            except Exception as exc:  # a broken plug-in: say which
                raise StoreSpecError(
                    f"the store {self.target!r} registered in {ENTRY_POINT_GROUP!r} cannot be "
                    f"loaded: {type(exc).__name__}: {exc}"
                ) from None
            if not callable(loaded):
                raise StoreSpecError(f"the store {self.target!r} is not a callable factory")
            return loaded
        if self.kind == "factory":
            return load_factory(self.target)
        raise StoreSpecError(f"{self.kind} is a built-in store, not a factory")

    async def open(
        self,
        *,
        path: str | os.PathLike[str] | None = None,
        on_conflict: ConflictPolicy = refuse_rewrite,
        check_integrity: bool = False,
    ) -> TurnStore:
        """Open a store to run on.

        ``path``: the SQLite file (required for ``sqlite``), or the server namespace to
        keep the run in (none: a scratch namespace dropped when the store closes).
        """
        if self.kind == "memory":
            return MemoryTurnStore(on_conflict=on_conflict)
        if self.kind in ("sqlite", "normalized"):
            if path is None:
                raise StoreSpecError("a SQLite store needs a file path")
            if self.kind == "normalized":
                return await open_normalized_store(
                    path, on_conflict=on_conflict, check_integrity=check_integrity
                )
            return await SQLiteTurnStore.open(
                path, on_conflict=on_conflict, check_integrity=check_integrity
            )
        name = os.fspath(path) if path is not None else None
        if self.kind == "postgresql":
            return await PostgresTurnStore.open_dsn(
                self.target, schema=name, scratch=name is None, on_conflict=on_conflict
            )
        if self.kind == "mysql":
            return await MySQLTurnStore.open_dsn(
                self.target, database=name, scratch=name is None, on_conflict=on_conflict
            )
        return await self._from_factory(on_conflict)

    async def open_existing(self, *, read_only: bool = True) -> TurnStore:
        """Open the namespace a server DSN names itself (the PostgreSQL ``?schema=``, the
        MySQL database), read-only by default: for serving and checking a kept run."""
        if self.kind == "postgresql":
            return await PostgresTurnStore.open_dsn(self.target, read_only=read_only)
        if self.kind == "mysql":
            return await MySQLTurnStore.open_dsn(self.target, read_only=read_only)
        if self.kind in ("factory", "entry-point"):
            return await self._from_factory(refuse_rewrite)
        raise StoreSpecError(f"a {self.kind} spec names no existing store; give a file path")

    def server(self) -> tuple[Any, str]:
        """The server dialect and the namespace this DSN names (its own ``?schema=`` or
        database), for tools that read the schema directly (the doctor)."""
        if self.kind == "postgresql":
            dialect: Any = PostgresDialect(self.target)
            return dialect, dialect.schema
        if self.kind == "mysql":
            dialect = MySQLDialect(self.target)
            return dialect, dialect.database
        raise StoreSpecError(f"a {self.kind} spec names no server")

    def dsn_for(self, namespace: str) -> str:
        """This server DSN with ``namespace`` as the one it names (the PostgreSQL schema,
        the MySQL database): where ``--db NAME`` kept a run."""
        scheme, _, rest = self.target.partition("://")
        netloc, _, tail = rest.partition("/")
        database, _, query = tail.partition("?")
        if self.kind == "postgresql":
            kept = [p for p in query.split("&") if p and not p.startswith("schema=")]
            return f"{scheme}://{netloc}/{database}?" + "&".join([*kept, f"schema={namespace}"])
        if self.kind == "mysql":
            return f"{scheme}://{netloc}/{namespace}" + (f"?{query}" if query else "")
        raise StoreSpecError(f"a {self.kind} spec has no namespaces")

    async def _from_factory(self, on_conflict: ConflictPolicy) -> TurnStore:
        factory = self.factory()
        if not _takes_on_conflict(factory) and on_conflict is not refuse_rewrite:
            raise StoreSpecError(
                f"--store {self.target}: the factory takes no on_conflict, so the "
                "upsert-overwrite variant cannot run on it"
            )
        try:
            made = factory(on_conflict=on_conflict) if _takes_on_conflict(factory) else factory()
            store = await made if inspect.isawaitable(made) else made
        except TurnsimError:
            raise
        except Exception as exc:  # the user's code: say whose, and what it raised
            raise StoreSpecError(
                f"--store {self.target}: the factory raised {type(exc).__name__}: {exc}"
            ) from None
        if not isinstance(store, TurnStore):
            missing = [n for n in ("save", "list", "conversations") if not hasattr(store, n)]
            raise StoreSpecError(
                f"--store {self.target}: the factory returned {type(store).__name__}, not a "
                f"TurnStore (missing: {', '.join(missing) or 'some members'}; see "
                "persisters.store.TurnStore)"
            )
        return store


def _redact(dsn: str) -> str:
    """A DSN without its user and password (the ``schema`` parameter stays)."""
    scheme, _, rest = dsn.partition("://")
    netloc, slash, tail = rest.partition("/")
    path, _, query = tail.partition("?")
    schema = [p for p in query.split("&") if p.startswith("schema=")]
    shown = f"{scheme}://{netloc.rpartition('@')[2]}{slash}{path}"
    return shown + (f"?{schema[0]}" if schema else "")


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
