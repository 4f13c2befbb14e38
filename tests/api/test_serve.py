"""The real server: Hypercorn over a real socket on both backends, the CLI, read-only serving."""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import anyio
import httpx
import pytest
from click.testing import CliRunner

from persisters import schema
from persisters.errors import NotSQLiteError, SchemaError, StoreError
from sim.api.client import DebugClient, RuntimeSpan
from sim.api.serve import ServeError, open_served_store, serve_database
from sim.cli.serve import serve
from tests.api.api_fixtures import INVENTORY, PLANNER, build_database, captured_info_logs

LOOPBACK = "127.0.0.1"


@pytest.fixture
async def story_db(tmp_path: Path) -> Path:
    return await build_database(tmp_path / "story.db")


@asynccontextmanager
async def serving(path: Path) -> AsyncIterator[str]:
    """Run serve_database on a free loopback port; yield its base URL; stop it on exit."""
    urls: list[str] = []
    ready = anyio.Event()

    def on_ready(url: str) -> None:
        urls.append(url)
        ready.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(serve_database, path, host=LOOPBACK, port=0, ready=on_ready))
        with anyio.fail_after(10):
            await ready.wait()
        yield urls[0]
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_real_server_over_a_socket(story_db: Path) -> None:
    with captured_info_logs() as events:
        async with serving(story_db) as url:
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
            async with httpx.AsyncClient(base_url=url) as http:
                api = DebugClient(http)
                detail = await api.conversation("c1")
                assert detail.current_runtime_key == PLANNER
                assert detail.runtime_history == (
                    RuntimeSpan(INVENTORY, "c1-t1", "c1-t1", 1),
                    RuntimeSpan(PLANNER, "c1-t2", "c1-t2", 1),
                )
                items = (await api.turns(conv_id="c1")).items
                assert {(i.turn_id, i.runtime_key, i.inference_id) for i in items} == {
                    ("c1-t1", INVENTORY, "inf-c1-1"),
                    ("c1-t2", PLANNER, "inf-c1-2"),
                }
                turn = await api.turn("c1", "s1", "c1-t1")
                assert [i.runtime_key for i in turn.items] == [INVENTORY] * 3
                refused = await http.get("/api/debug/turns?limit=5000")
                assert (refused.status_code, refused.json()) == (
                    400,
                    {"error": "limit must be an integer from 1 to 1000, got 5000"},
                )
                assert (await http.delete("/api/debug/turns")).status_code == 405
    # Stopped: nothing listens on that port any more.
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(base_url=url) as http:
            await http.get("/api/debug/conversations")
    names = [e["event"] for e in events]
    assert names[0] == "http.serve.started" and names[-1] == "http.serve.stopped"
    requests = [e for e in events if e["event"] == "http.request"]
    assert [(e["method"], e["status"]) for e in requests] == [
        ("GET", 200),
        ("GET", 200),
        ("GET", 200),
        ("GET", 400),
        ("DELETE", 405),
    ]


@pytest.mark.anyio
async def test_the_served_connection_cannot_write(story_db: Path) -> None:
    store = await open_served_store(story_db)
    try:
        with pytest.raises(StoreError, match="readonly"):
            await store.execute("UPDATE conversations SET current_runtime_key = 'x'")
        with pytest.raises(StoreError, match="readonly"):
            await store.conversations.set_current_runtime("c1", "s1", "x@v1", "x", 1)
        assert (await store.conversations.get("c1")).current_runtime_key == PLANNER  # type: ignore[union-attr]
    finally:
        await store.close()


def old_database(path: Path) -> Path:
    with sqlite3.connect(path) as conn:
        conn.executescript(schema.OLD_TURNS_SCHEMA)
    conn.close()
    return path


def columns(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[1] for row in conn.execute("PRAGMA table_info(turns)")]
    finally:
        conn.close()


@pytest.mark.anyio
async def test_serving_never_migrates(tmp_path: Path) -> None:
    path = old_database(tmp_path / "turns.db")
    before = columns(path)
    with pytest.raises(SchemaError, match=r"turnsim db migrate"):
        await serve_database(path, host=LOOPBACK, port=0)
    assert columns(path) == before
    assert "runtime_key" not in before


@pytest.mark.anyio
async def test_serving_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NotSQLiteError, match="no such file"):
        await serve_database(tmp_path / "absent.db", host=LOOPBACK, port=0)
    assert not (tmp_path / "absent.db").exists()


@pytest.mark.anyio
async def test_serving_refuses_a_busy_port(story_db: Path) -> None:
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServeError, match=f"cannot listen on 127.0.0.1:{port}"):
            await serve_database(story_db, host=LOOPBACK, port=port)


def _text_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.db"
    path.write_text("these are not the rows you are looking for\n" * 100)
    return path


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda tmp: tmp / "absent.db", "no such file"),
        (_text_file, "not a usable SQLite database"),
        (lambda tmp: old_database(tmp / "turns.db"), "run `turnsim db migrate"),
    ],
)
def test_cli_refuses_with_one_line_and_exit_2(tmp_path: Path, make: object, fragment: str) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    result = CliRunner().invoke(serve, ["--db", str(path), "--port", "0"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("turnsim serve: "), result.stderr
    assert fragment in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_cli_serves_until_signalled(tmp_path: Path, signum: signal.Signals) -> None:
    path = anyio.run(build_database, tmp_path / "story.db")
    command = [sys.executable, "-m", "sim", "serve", "--db", str(path), "--port", "0"]
    command += ["--log-format", "json"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env) as proc:
        try:
            assert proc.stderr is not None
            seen = [proc.stderr.readline() for _ in range(2)]  # a log line and the banner
            found = re.search(r"at (http://127\.0\.0\.1:\d+)/api/debug/", "".join(seen))
            assert found, seen
            response = httpx.get(f"{found[1]}/api/debug/conversations/c1", timeout=10)
            assert response.status_code == 200
            assert response.json()["current_runtime_key"] == PLANNER
            proc.send_signal(signum)
            assert proc.wait(timeout=10) == 0
            rest = proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
    assert '"event":"http.request"' in rest and '"status":200' in rest
    assert f'"signal":"{signum.name}"' in rest and '"event":"http.serve.stopped"' in rest
    assert rest.endswith("stopped\n") and "Traceback" not in rest


STUCK_STORE = """\
import pathlib, time, anyio.to_thread

async def make():
    pathlib.Path({mark!r}).touch()
    await anyio.to_thread.run_sync(time.sleep, 60)  # a thread no cancellation reaches
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_stops_a_server_stuck_where_cancellation_cannot_reach(
    tmp_path: Path, signum: signal.Signals
) -> None:
    """Signals always stop the server: the first asks, the second (or FORCE_AFTER_S) ends it."""
    mark = tmp_path / "opening"
    (tmp_path / "stuck_store.py").write_text(STUCK_STORE.format(mark=str(mark)))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    command = [sys.executable, "-m", "sim", "serve", "--db", "stuck_store:make", "--port", "0"]
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env) as proc:
        try:
            deadline = time.monotonic() + 20
            while not mark.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert mark.exists(), "the store never started opening"
            proc.send_signal(signum)
            time.sleep(0.3)
            proc.send_signal(signum)
            assert proc.wait(timeout=3) == 130
        finally:
            if proc.poll() is None:
                proc.kill()
            rest = proc.stderr.read() if proc.stderr else ""
    assert "forced_stop" in rest and "Traceback" not in rest
