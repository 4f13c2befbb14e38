"""What serving does to the file and how it answers while another process holds it
(issue 14, item 10): reads answer 503 within about a second while a VACUUM or migration
holds the lock (not after the writers' 5 s busy timeout per read), and a read-only server
leaves no -wal/-shm behind when there were none before it started."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import anyio
import httpx
import pytest

from persisters.stores import open_database
from sim.api.app import create_app
from sim.api.serve import serve_database
from tests.api.api_fixtures import build_database


def rollback_journal_copy(tmp_path: Path) -> Path:
    path = anyio.run(build_database, tmp_path / "story.db")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    return path


@pytest.mark.anyio
async def test_reads_answer_503_promptly_while_another_process_holds_the_lock(
    tmp_path: Path,
) -> None:
    path = await anyio.to_thread.run_sync(rollback_journal_copy, tmp_path)
    store = await open_database(path, read_only=True)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # what VACUUM holds while it rewrites the file
        transport = httpx.ASGITransport(app=create_app(store), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            for url in (
                "/api/debug/conversations",
                "/api/debug/turns",
                "/api/debug/conversations/c1",
            ):
                started = time.monotonic()
                response = await http.get(url)
                elapsed = time.monotonic() - started
                assert response.status_code == 503, (url, response.text)
                assert "busy" in response.json()["error"]
                assert elapsed < 3.0, (url, elapsed)
        holder.execute("ROLLBACK")
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            assert (await http.get("/api/debug/conversations")).status_code == 200
    finally:
        holder.close()
        await store.close()


def test_a_read_only_server_leaves_no_wal_files_behind(tmp_path: Path) -> None:
    path = anyio.run(build_database, tmp_path / "story.db")
    assert not Path(f"{path}-wal").exists() and not Path(f"{path}-shm").exists()
    before = path.read_bytes()

    async def serve_once() -> None:
        ready = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: serve_database(path, port=0, ready=lambda url: ready.set()))
            await ready.wait()
            assert Path(f"{path}-shm").exists()  # SQLite's WAL index, while serving
            tg.cancel_scope.cancel()

    anyio.run(serve_once)
    assert not Path(f"{path}-wal").exists() and not Path(f"{path}-shm").exists()
    assert path.read_bytes() == before
