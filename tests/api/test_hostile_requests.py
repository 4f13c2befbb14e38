"""Hostile requests and hostile bytes: trailing slashes, foreign Host headers, escapes.

- A path with a trailing slash (or several) is an unknown path: JSON 404 for GET, never a
  307 redirect whose target comes from the client's Host header, for any method.
- The server answers only the Host names it is bound to (DNS rebinding), plus
  ``--allow-host`` names; IPv6 literals are bracketed.
- Request paths, names and messages printed for people are escaped; JSON stays exact.
"""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest
import structlog

from persisters.memory_store import MemoryTurnStore
from sim.api.app import create_app, host_of
from sim.api.serve import host_names, listen
from sim.logs.setup import configure_logging
from tests.api.api_fixtures import build_database

pytestmark = pytest.mark.anyio

PATHS = [
    "/api/debug/conversations/",
    "/api/debug/conversations//",
    "/api/debug/turns/",
    "/api/debug/turns/?limit=1",
    "/api/debug/openapi.json/",
    "/api/debug/turn/c1/s1/t1/",
    "/api/debug/conversations/c1/",
]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(MemoryTurnStore(), allowed_hosts=["localhost", "127.0.0.1", "[::1]"])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        yield client


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", PATHS)
async def test_a_trailing_slash_is_an_unknown_path(
    http: httpx.AsyncClient, path: str, method: str
) -> None:
    response = await http.request(method, path, headers={"Host": "localhost"})
    assert response.status_code in (404, 405), (method, path, response.status_code)
    assert "location" not in response.headers
    if method != "HEAD":
        assert response.headers["content-type"] == "application/json"
        assert set(response.json()) == {"error"}


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:8765",
        "localhost.evil.example",
        "127.0.0.2",
        "",
        "[::2]:80",
        "localhost:abc",
        "[::1",
        "a b",
    ],
)
async def test_a_foreign_host_header_is_refused_with_json(
    http: httpx.AsyncClient, host: str
) -> None:
    response = await http.get("/api/debug/conversations", headers={"Host": host})
    assert response.status_code == 400
    assert "allow-host" in response.json()["error"]


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST:8765", "127.0.0.1:1", "[::1]:8765", "[::1]"]
)
async def test_the_bound_names_are_answered(http: httpx.AsyncClient, host: str) -> None:
    response = await http.get("/api/debug/conversations", headers={"Host": host})
    assert response.status_code == 200, response.text


def test_host_of_parses_ipv6_and_ports() -> None:
    assert host_of("[::1]:8765") == "[::1]" and host_of("Example.COM:80") == "example.com"
    assert host_of("[::1]x") is None and host_of("h:port") is None and host_of("") is None


def test_default_names_are_the_bound_ones() -> None:
    sock = listen("127.0.0.1", 0)
    try:
        names = host_names("127.0.0.1", sock, ["Dev.Box"])
    finally:
        sock.close()
    assert {"localhost", "127.0.0.1", "[::1]", "dev.box"} <= set(names)
    assert "*" not in names
    if socket.has_ipv6:
        try:
            six = listen("::1", 0)
        except Exception:  # no IPv6 loopback here
            return
        try:
            assert "[::1]" in host_names("::1", six)
        finally:
            six.close()


def test_the_server_refuses_a_rebinding_host_and_allow_host_adds_one(tmp_path: Path) -> None:
    path = anyio.run(build_database, tmp_path / "story.db")
    command = [sys.executable, "-m", "sim", "serve", "--db", str(path), "--port", "0"]
    command += ["--allow-host", "dev.example"]
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stderr is not None
            seen = [proc.stderr.readline() for _ in range(2)]
            found = re.search(r"at (http://127\.0\.0\.1:\d+)/api/debug/", "".join(seen))
            assert found, seen
            url = f"{found[1]}/api/debug/conversations"
            assert httpx.get(url, timeout=10).status_code == 200
            assert (
                httpx.get(url, headers={"Host": "attacker.example"}, timeout=10).status_code == 400
            )
            assert httpx.get(url, headers={"Host": "dev.example"}, timeout=10).status_code == 200
        finally:
            proc.terminate()
            proc.wait(timeout=10)


HOSTILE = "/api/debug/\x1b[2J\u202eevil\x00"


async def test_console_logs_escape_a_hostile_request_path() -> None:
    out = io.StringIO()
    configure_logging(fmt="console", stream=out, level="info")
    try:
        app = create_app(MemoryTurnStore())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            await client.get("/api/debug/%1B%5B2J%E2%80%AEevil%00")
    finally:
        configure_logging(fmt="console", level="error")
    text = out.getvalue()
    assert "http.request" in text
    assert "\x1b[2J" not in text and "\u202e" not in text and "\x00" not in text
    assert "\\x1b[2J\\u202eevil\\x00" in text


def test_json_logs_stay_exact() -> None:
    out = io.StringIO()
    configure_logging(fmt="json", stream=out, level="info")
    try:
        structlog.get_logger("t").info("x", path=HOSTILE)
    finally:
        configure_logging(fmt="console", level="error")
    assert '"path":"/api/debug/\\u001b[2J\u202eevil\\u0000"' in out.getvalue() or (
        __import__("json").loads(out.getvalue())["path"] == HOSTILE
    )


def test_run_and_explore_reports_escape_a_hostile_scenario_name(tmp_path: Path) -> None:
    scenario = tmp_path / "evil.yaml"
    scenario.write_text(
        'name: "evil\\e[2J\\u202e[red]odd"\n'
        "profiles: {p: {runtime_key: p@v1}}\n"
        "conversations: {c1: {profile: p}}\n"
        "steps: [{send: {conv: c1, turn: t1, prompt: hi}}]\n"
    )
    env = {**os.environ, "COLUMNS": "200"}
    for args in (
        ["run", str(scenario), "--log-format", "console"],
        ["explore", str(scenario), "--seeds", "2", "--out", str(tmp_path / "x")],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "sim", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        both = done.stdout + done.stderr
        assert done.returncode == 0, both
        assert "\x1b[2J" not in both and "\u202e" not in both, args
        assert "\\x1b[2J" in both
