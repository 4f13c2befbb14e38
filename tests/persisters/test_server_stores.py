"""What the PostgreSQL and MySQL/MariaDB stores add to the contract: the database itself
refuses what the rules forbid, two store objects (two connection pools, as two processes)
cannot race a rewrite in, namespaces are created, kept and dropped as asked, and a DSN's
mistakes are refused with a message.

The contract suite runs on both servers in ``test_store_contract.py``; here each test
opens its own uniquely named schema/database and drops it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from persisters.contract.base import payload
from persisters.errors import (
    PermanentStoreError,
    StoreError,
    TransientStoreError,
    TurnRewriteError,
)
from persisters.model import FINAL, PRE_INFERENCE, TurnQuery, TurnSaveOptions
from persisters.mysql_store import MySQLDialect
from persisters.postgres_store import PostgresDialect
from persisters.server_store import ServerTurnStore
from persisters.store import new_value_wins
from persisters.stores import StoreSpec
from tests.servers import drop_namespace, need, unique_name

pytestmark = pytest.mark.anyio

SERVERS = ["postgresql", "mysql"]


@pytest.fixture(params=SERVERS)
async def kept(request: pytest.FixtureRequest) -> AsyncIterator[tuple[StoreSpec, str]]:
    """A server spec and a fresh namespace name on it, dropped after the test."""
    kind = request.param
    spec = StoreSpec.parse(need(kind))
    name = unique_name()
    yield spec, name
    await anyio.to_thread.run_sync(drop_namespace, kind, name)


async def test_the_database_refuses_to_update_or_delete_a_snapshot(
    kept: tuple[StoreSpec, str],
) -> None:
    spec, name = kept
    store: Any = await spec.open(path=name)
    try:
        await store.save("c1", "s1", "t1", FINAL, 1, payload("t1", 1), TurnSaveOptions("a@v1"))
        for sql in (
            "UPDATE turn_snapshots SET runtime_key = 'b@v1'",
            "DELETE FROM turn_snapshots",
        ):
            with pytest.raises(PermanentStoreError, match="append-only"):
                await store.execute(sql)
        [snapshot] = await store.list(TurnQuery())
        assert snapshot.runtime_key == "a@v1"
    finally:
        await store.close()


async def test_the_database_refuses_to_rewrite_a_turns_recorded_values(
    kept: tuple[StoreSpec, str],
) -> None:
    """The write-once trigger: raw SQL cannot change a recorded value, and the
    ``upsert-overwrite`` policy's rewrite fails alone as TurnRewriteError."""
    spec, name = kept
    store: Any = await spec.open(path=name)
    buggy: Any = await spec.open(path=name, on_conflict=new_value_wins)
    try:
        await store.save("c1", "s1", "t1", FINAL, 1, payload("t1", 1), TurnSaveOptions("a@v1"))
        for sql in (
            "UPDATE turns SET runtime_key = 'b@v1'",
            "UPDATE turns SET runtime_key = ''",
        ):
            with pytest.raises(PermanentStoreError, match="turnsim write-once"):
                await store.execute(sql)
        with pytest.raises(TurnRewriteError) as caught:
            await buggy.save("c1", "s1", "t1", FINAL, 2, payload("t1", 2), TurnSaveOptions("b@v1"))
        assert caught.value.by_trigger
        record = await store.get_turn("c1", "s1", "t1")
        assert (record.runtime_key, record.inference_id) == ("a@v1", "")
        # the same store keeps working: a save that rewrites nothing goes through
        await buggy.save("c1", "s1", "t2", FINAL, 3, payload("t2", 3), TurnSaveOptions("b@v1"))
        assert len(await store.list(TurnQuery())) == 2
    finally:
        await buggy.close()
        await store.close()


async def test_two_stores_racing_on_new_turns_record_one_runtime_each(
    kept: tuple[StoreSpec, str],
) -> None:
    """Two pools save the first snapshot of the same 30 turns at once, with different
    runtimes: per turn, one save creates it and the other is refused (never both, never
    an overwrite) - the insert and the write-once update leave no gap between a read and
    a write."""
    spec, name = kept
    first: Any = await spec.open(path=name)
    second: Any = await spec.open(path=name)
    outcomes: dict[tuple[str, str], str] = {}

    async def writer(store: Any, runtime: str) -> None:
        for n in range(30):
            try:
                result = await store.save(
                    "c1",
                    "s1",
                    f"t{n}",
                    PRE_INFERENCE,
                    n,
                    payload(f"t{n}"),
                    TurnSaveOptions(runtime),
                )
            except TurnRewriteError:
                outcomes[(f"t{n}", runtime)] = "refused"
            else:
                outcomes[(f"t{n}", runtime)] = "created" if result.created_turn else "joined"

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer, first, "a@v1")
            tg.start_soon(writer, second, "b@v1")
        for n in range(30):
            pair = sorted(outcomes[(f"t{n}", r)] for r in ("a@v1", "b@v1"))
            assert pair == ["created", "refused"], (n, pair)
            record = await first.get_turn("c1", "s1", f"t{n}")
            [snap] = await first.list(TurnQuery(turn_id=f"t{n}"))
            assert outcomes[(f"t{n}", record.runtime_key)] == "created"
            assert snap.runtime_key == record.runtime_key
    finally:
        await first.close()
        await second.close()


async def test_a_kept_namespace_outlives_its_store_and_a_scratch_one_does_not(
    kept: tuple[StoreSpec, str],
) -> None:
    spec, name = kept
    store: Any = await spec.open(path=name)
    await store.save("c1", "s1", "t1", FINAL, 1, payload("t1"), TurnSaveOptions("a@v1", "i1"))
    await store.conversations.set_current_runtime("c1", "s1", "a@v1", "a", 1)
    await store.close()
    again: Any = await spec.open(path=name)
    try:
        assert (await again.get_turn("c1", "s1", "t1")).runtime_key == "a@v1"
        with pytest.raises(TurnRewriteError):  # write-once survives the reopen
            await again.save("c1", "s1", "t1", FINAL, 2, payload("t1"), TurnSaveOptions("x"))
    finally:
        await again.close()
    # the DSN names the kept namespace for readers: read-only, refused by the server
    reader: Any = await StoreSpec.parse(spec.dsn_for(name)).open_existing(read_only=True)
    try:
        assert [c.conv_id for c in await reader.conversations.list()] == ["c1"]
        with pytest.raises(PermanentStoreError, match="readonly"):
            await reader.save("c1", "s1", "t2", FINAL, 3, payload("t2"), TurnSaveOptions("a@v1"))
    finally:
        await reader.close()
    scratch: Any = await spec.open()
    scratch_name = scratch.namespace
    await scratch.close()
    dialect, _ = spec.server()
    conn = dialect.connect(name, read_only=True)  # any namespace: we ask the catalogue
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %(n)s",
                {"n": scratch_name},
            )
            assert cur.fetchone()[0] == 0
    finally:
        conn.close()


async def test_a_closed_server_store_refuses_and_closes_twice(kept: tuple[StoreSpec, str]) -> None:
    spec, name = kept
    store: Any = await spec.open(path=name)
    await store.close()
    with pytest.raises(StoreError):
        await store.save("c1", "s1", "t1", FINAL, 1, payload("t1"), TurnSaveOptions("a@v1"))
    with pytest.raises(StoreError):
        await store.list(TurnQuery())
    await store.close()


async def test_an_unreachable_server_is_a_transient_error_naming_it() -> None:
    for dsn in ("postgresql://127.0.0.1:1/test", "mysql://root@127.0.0.1:1/test"):
        with pytest.raises(TransientStoreError, match=r"127\.0\.0\.1") as info:
            await StoreSpec.parse(dsn).open()
        assert "Traceback" not in str(info.value)


def test_dsn_mistakes_are_refused_with_what_to_do() -> None:
    with pytest.raises(StoreError, match="names no database"):
        MySQLDialect("mysql://root@127.0.0.1:3306")
    with pytest.raises(StoreError, match="not understood"):
        MySQLDialect("mysql://root@127.0.0.1/test?flavour=x")
    with pytest.raises(StoreError, match="not a plain name"):
        PostgresDialect("postgresql://127.0.0.1/test?schema=a;drop")
    assert PostgresDialect("postgresql://127.0.0.1/test?sslmode=disable").schema == "public"
    assert PostgresDialect("postgres://u:secret@h/test?schema=run1").schema == "run1"


def test_passwords_never_reach_a_label_or_a_message() -> None:
    spec = StoreSpec.parse("postgresql://me:hunter2@db.example:5433/app?schema=r1")
    assert spec.label == "postgresql://db.example:5433/app?schema=r1"
    assert "hunter2" not in PostgresDialect(spec.target).describe("r1")
    mysql = StoreSpec.parse("mysql://me:hunter2@db.example/app")
    assert "hunter2" not in mysql.label
    assert "hunter2" not in MySQLDialect(mysql.target).describe("app")
    assert StoreSpec.parse(mysql.dsn_for("kept")).target == "mysql://me:hunter2@db.example/kept"
    assert spec.dsn_for("r2").endswith("/app?schema=r2")


async def test_server_store_is_a_server_turn_store(kept: tuple[StoreSpec, str]) -> None:
    spec, name = kept
    store = await spec.open(path=name)
    try:
        assert isinstance(store, ServerTurnStore)
        assert store.kind == spec.kind
        assert store.namespace == name
    finally:
        await store.close()
