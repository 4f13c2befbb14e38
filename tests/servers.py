"""The database servers tests run against (PostgreSQL, MariaDB/MySQL), found or not.

DSNs: ``TURNSIM_TEST_POSTGRES`` (default ``postgresql://127.0.0.1:5432/test``) and
``TURNSIM_TEST_MYSQL`` (default ``mysql://root@127.0.0.1:3306/test``). Tests create their
own uniquely named schemas/databases there (scratch stores) and drop them.

A server that does not answer makes its tests *skip*, each with the reason, and the run's
summary says how many were skipped (``tests/conftest.py``). With
``TURNSIM_REQUIRE_SERVERS=1`` (``.ci/run`` sets it) they *fail* instead: CI never skips a
server silently. This switch is test-only; the package reads no environment (rule 7).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import pytest

POSTGRES_DSN = os.environ.get("TURNSIM_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test")
MYSQL_DSN = os.environ.get("TURNSIM_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test")
REQUIRED = os.environ.get("TURNSIM_REQUIRE_SERVERS", "") not in ("", "0")
DSNS = {"postgresql": POSTGRES_DSN, "mysql": MYSQL_DSN}
NAMES = {"postgresql": "PostgreSQL", "mysql": "MariaDB/MySQL"}
#: The start of every skip reason given here (the summary counts them by it).
SKIP_PREFIX = "server not available"


@functools.cache
def unavailable(kind: str) -> str | None:
    """Why the ``kind`` server cannot be used (None: it answers)."""
    try:
        if kind == "postgresql":
            import psycopg

            with psycopg.connect(POSTGRES_DSN, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
        else:
            import pymysql

            from persisters.mysql_store import MySQLDialect

            options = dict(MySQLDialect(MYSQL_DSN).options, connect_timeout=3)
            pymysql.connect(**options).close()
    except Exception as exc:  # any reason at all is a reason to skip (or fail on CI)
        return f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
    return None


def need(kind: str) -> str:
    """The ``kind`` server's DSN; skip the test (fail, if required) when it is not there."""
    reason = unavailable(kind)
    if reason is not None:
        where = f"{NAMES[kind]} at {DSNS[kind]}"
        if REQUIRED:
            pytest.fail(f"{where} is required (TURNSIM_REQUIRE_SERVERS=1) but: {reason}")
        pytest.skip(f"{SKIP_PREFIX}: {where} ({reason})")
    return DSNS[kind]


def drop_namespace(kind: str, name: str) -> None:
    """Drop a schema (PostgreSQL) / database (MySQL) a test kept, if it is there."""
    from persisters.stores import StoreSpec

    dialect, _ = StoreSpec.parse(DSNS[kind]).server()
    dialect.drop_namespace(name)


def unique_name(prefix: str = "turnsim_test") -> str:
    """A namespace name no other test (or process) uses."""
    return f"{prefix}_{os.urandom(6).hex()}"


@functools.cache
def scratch_pool(kind: str) -> Any:
    """One :class:`~persisters.server_store.ScratchPool` per server for the whole test run
    (``tests/conftest.py`` drops its namespaces at the end)."""
    from persisters.server_store import ScratchPool
    from persisters.stores import StoreSpec

    return ScratchPool(StoreSpec.parse(DSNS[kind]).server()[0])


def close_scratch_pools() -> None:
    for kind in DSNS:
        if scratch_pool.cache_info().currsize and unavailable(kind) is None:
            scratch_pool(kind).close()
