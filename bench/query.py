"""Debug query: ``/api/debug/turns?conv_id=..&runtime_key=..&limit=50`` at 1,000,000 rows.

The database holds 1,000,000 snapshots in the current schema (5,000 conversations x 50
turns x 4 phases, the runtime switching every 5 turns among three, so every (conversation,
runtime) pair matches more than 50 rows), written in SQL and indexed like the store.

Every path asks the same (conversation, runtime) pairs in the same order, one request at a
time, after a warm-up:

* measured: the endpoint over HTTP, served by ``turnsim serve`` in its own process
  (``--log-level warning``: no line per request), asked from this process over one
  keep-alive connection by :class:`RawClient`: a minimal HTTP/1.1 client on a plain
  socket (request line and Host header out; status line, headers and exactly
  Content-Length body bytes in). Latency is from sending the request to the last body
  byte; the body is then decoded and its items counted, outside the clock;
* the same requests through ``http.client`` with ``json.loads`` of the body inside the
  clock (what this bench reported before; ``httpx`` adds about 0.6 ms more);
* the floor of the HTTP stack, each server in its own process: ``sim.api.app.debug_app`` (the
  API's request log and error handling) with one route that returns a fixed body, served by
  ``sim.api.serve.serve_app`` (the Hypercorn config of ``turnsim serve``): once a small JSON
  body, once a page recorded from the endpoint (the same bytes as a real answer); and the
  client alone: :class:`RawClient` against a plain blocking socket server answering every
  request with that page;
* in-process, no HTTP: ``SQLiteTurnStore.list_rows(query)`` (the API's read: one
  worker-thread hop, rows) and ``SQLiteTurnStore.list`` (the hop and the
  ``TurnSnapshot`` objects);
* the conversation list, ``GET /api/debug/conversations`` (every conversation with its
  turn count), 20 requests over HTTP against its two reads as direct SQL;
* for orientation, one inference's snapshots as direct SQL, with its ``conv_id`` (an
  index lookup) and without (no index leads with ``inference_id``: the newest-first scan
  reads every snapshot), 3 lookups each;
* baseline: the same query as direct SQL (``persisters.sqlite_store.list_sql`` on a
  read-only ``sqlite3`` connection to the same file), fetching every row.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio
from figures import Report, err, parse_args, percentile, progress, step
from workload import fresh_database

from persisters.model import TurnQuery, dumps
from persisters.schema import INDEXES
from persisters.sqlite_database import connect
from persisters.sqlite_store import (
    CONVERSATIONS_SQL,
    TURN_COUNTS_SQL,
    SQLiteTurnStore,
    list_sql,
)

GOAL = "<= 3"
RUNTIMES = ("inventory@v1", "planner@v1", "support@v2")
LIMIT = 50

_FILL = """
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < :rows),
s AS (
  SELECT i, i / :per_conv AS c, (i % :per_conv) / 4 AS t, i % 4 AS p FROM n
),
r AS (
  SELECT i, c, t, p,
    printf('c%05d', c) AS conv_id,
    printf('s%05d', c) AS session_id,
    printf('t%05d-%03d', c, t) AS turn_id,
    printf('i%05d-%03d', c, t) AS inference_id,
    CASE ((t / 5) + c) % 3 WHEN 0 THEN 'inventory@v1' WHEN 1 THEN 'planner@v1'
      ELSE 'support@v2' END AS runtime_key,
    CASE p WHEN 0 THEN 'pre_inference' WHEN 1 THEN 'post_inference' WHEN 2 THEN 'post_tools'
      ELSE 'final' END AS phase,
    1700000000000 + t * 1000 + p * 100 + c % 97 AS created_at_ms
  FROM s
)
INSERT INTO turn_snapshots (conv_id, session_id, turn_id, phase, created_at_ms, payload,
  runtime_key, inference_id)
SELECT conv_id, session_id, turn_id, phase, created_at_ms,
  json_object(
    'id', turn_id,
    'blocks', json_array(
      json_object('kind', 'system', 'text', 'You are the ' || runtime_key || ' assistant.'),
      json_object('kind', 'user', 'text', printf('prompt %d of conversation %d', t, c)),
      json_object('kind', 'llm_text', 'text', printf('[%s] reply %d', runtime_key, t))),
    'metadata', json_object(
      'geppetto.session_id@v1', session_id,
      'geppetto.inference_id@v1', inference_id,
      'geppetto.runtime@v1', runtime_key),
    'data', json_object('profile', substr(runtime_key, 1, instr(runtime_key, '@') - 1))),
  runtime_key, inference_id
FROM r
"""
_TURNS = """
INSERT INTO turns (conv_id, session_id, turn_id, turn_created_at_ms, turn_metadata_json,
  turn_data_json, updated_at_ms, runtime_key, inference_id)
SELECT conv_id, session_id, turn_id, min(created_at_ms),
  json_extract(max(payload), '$.metadata'), '{}', max(created_at_ms), runtime_key, inference_id
FROM turn_snapshots GROUP BY conv_id, session_id, turn_id
"""
_CONVERSATIONS = """
INSERT INTO conversations (conv_id, session_id, current_runtime_key, profile_slug,
  created_at_ms, last_activity_ms)
SELECT conv_id, session_id, max(runtime_key), 'inventory', min(created_at_ms),
  max(created_at_ms)
FROM turn_snapshots GROUP BY conv_id
"""


def build_database(path: str, conversations: int, per_conv: int) -> int:
    """Write the snapshots, turns and conversations; indexes are built after the rows."""
    conn = fresh_database(path)
    try:
        for name in INDEXES:
            conn.execute(f"DROP INDEX {name}")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(_FILL, {"rows": conversations * per_conv, "per_conv": per_conv})
        conn.execute(_TURNS)
        conn.execute(_CONVERSATIONS)
        for name, definition in INDEXES.items():
            conn.execute(f"CREATE INDEX {name} ON {definition}")
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return conn.execute("SELECT count(*) FROM turn_snapshots").fetchone()[0]
    finally:
        conn.close()


#: What a server started by this bench prints once it accepts connections.
_ANNOUNCED = re.compile(r"at http://(\S+?):(\d+)/api/debug/")
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CONNECTION_CLOSE = re.compile(rb"\r\nconnection:[ \t]*close", re.IGNORECASE)
#: The small fixed body of the empty-endpoint floor.
SMALL_BODY = dumps({"items": []}).encode()


class RawClient:
    """A minimal keep-alive HTTP/1.1 GET client on a plain socket (``TCP_NODELAY``).

    ``get`` sends the request line and a Host header, reads up to the blank line after the
    headers, then exactly Content-Length body bytes: no header objects, no decoding. When
    the server closes the connection (Hypercorn does after 1,000 requests on one), the
    request is sent again on a new connection.
    """

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.host = f"{host}:{port}"
        self.sock: socket.socket | None = None

    def get(self, target: str) -> tuple[int, bytes]:
        """``(status, body)`` of ``GET target``."""
        request = f"GET {target} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode("ascii")
        for attempt in range(2):
            if self.sock is None:
                self.sock = socket.create_connection(self.address, timeout=30)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                return self._exchange(self.sock, request)
            except ConnectionError:
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _exchange(self, sock: socket.socket, request: bytes) -> tuple[int, bytes]:
        sock.sendall(request)
        data = b""
        while (end := data.find(b"\r\n\r\n")) < 0:
            data += self._recv(sock)
        head, body = data[:end], data[end + 4 :]
        found = _CONTENT_LENGTH.search(head)
        if found is None:
            raise SystemExit(f"response without Content-Length: {head[:200]!r}")
        length = int(found.group(1))
        while len(body) < length:
            body += self._recv(sock)
        if _CONNECTION_CLOSE.search(head):
            self.close()
        return int(head[9:12]), body

    @staticmethod
    def _recv(sock: socket.socket) -> bytes:
        chunk = sock.recv(1 << 18)
        if not chunk:
            raise ConnectionError("server closed the connection")
        return chunk

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def timed(
    queries: Sequence[tuple[str, str]],
    ask: Callable[[str, str], Any],
    count: Callable[[Any], int],
    advance: Callable[[], None],
    expect: int | None = LIMIT,
) -> list[float]:
    """Seconds per ``ask``; ``count`` (outside the clock) checks each answer's row count."""
    samples = []
    for conv_id, runtime_key in queries:
        started = time.perf_counter()
        answer = ask(conv_id, runtime_key)
        samples.append(time.perf_counter() - started)
        got = count(answer)
        if expect is not None and got != expect:
            raise SystemExit(f"{conv_id}/{runtime_key}: {got} rows, expected {expect}")
        advance()
    return samples


def target(conv_id: str, runtime_key: str) -> str:
    query = urlencode({"conv_id": conv_id, "runtime_key": runtime_key, "limit": LIMIT})
    return f"/api/debug/turns?{query}"


def start_server(argv: list[str], log: Path) -> tuple[subprocess.Popen[bytes], tuple[str, int]]:
    """Start a server process that announces its URL on stderr; its process, host and port."""
    with log.open("wb") as sink:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=sink)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = _ANNOUNCED.search(log.read_text(errors="replace"))
        if found:
            return proc, (found.group(1), int(found.group(2)))
        if proc.poll() is not None:
            raise SystemExit(f"{argv[1:3]} exited: {log.read_text(errors='replace')}")
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{argv[1:3]} did not announce its URL within 30 s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        err.print("[red]a bench server did not stop on SIGTERM; killed[/]")


def turnsim_serve(path: str) -> list[str]:
    """``turnsim serve`` on a free port, no line per request."""
    serve = ["serve", "--db", path, "--port", "0", "--log-level", "warning"]
    return [sys.executable, "-m", "sim", *serve]


def floor_server(kind: str, body_file: Path) -> list[str]:
    """The argv of one of this script's own servers (see :func:`serve_internal`)."""
    return [sys.executable, str(Path(__file__).resolve()), f"--serve-{kind}", str(body_file)]


def serve_floor(body: bytes) -> None:
    """The HTTP stack of ``turnsim serve`` with one fixed-body route and no store."""
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from sim.api.app import debug_app
    from sim.api.openapi import PREFIX
    from sim.api.serve import listen, serve_app, until_signalled
    from sim.logs.setup import configure_logging

    async def fixed(request: Request) -> Response:
        return Response(body, media_type="application/json")

    configure_logging(fmt="console", level="warning")  # as turnsim serve --log-level warning
    app = debug_app([Route(f"{PREFIX}/turns", fixed, methods=["GET"])])

    def announce(url: str) -> None:
        print(f"serving the floor at {url}/api/debug/", file=sys.stderr, flush=True)

    anyio.run(until_signalled, partial(serve_app, app, listen("127.0.0.1", 0), ready=announce))


def serve_canned(body: bytes) -> None:
    """A plain blocking socket server that answers every request with ``body``."""
    reply = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )
    with socket.create_server(("127.0.0.1", 0)) as listener:
        host, port = listener.getsockname()[:2]
        print(f"serving canned replies at http://{host}:{port}/api/debug/", file=sys.stderr)
        sys.stderr.flush()
        while True:
            conn, _ = listener.accept()
            with conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                pending = b""
                while chunk := conn.recv(1 << 16):
                    pending += chunk
                    while b"\r\n\r\n" in pending:
                        _, pending = pending.split(b"\r\n\r\n", 1)
                        conn.sendall(reply)


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(__doc__, argv)
    conversations, per_conv = (250, 200) if args.quick else (5000, 200)
    asks, warmup = (200, 20) if args.quick else (1000, 100)
    rng = random.Random(11)
    queries = [
        (f"c{rng.randrange(conversations):05d}", rng.choice(RUNTIMES)) for _ in range(asks + warmup)
    ]
    lists = [("", "")] * (6 if args.quick else 21)  # the first of them is a warm-up
    # (conv_id, inference_id) of one inference's 4 snapshots; the first is a warm-up
    inferences = [
        (f"c{c:05d}", f"i{c:05d}-{rng.randrange(per_conv // 4):03d}")
        for c in (rng.randrange(conversations) for _ in range(4))
    ]
    report = Report(
        "query",
        "Debug query",
        args.quick,
        columns=["path", "requests", "p50 ms", "p99 ms", "mean ms"],
    )
    samples: dict[str, list[float]] = {}

    def items_of(body: bytes) -> int:
        return len(json.loads(body)["items"])

    def over_http(key: str, label: str, address: tuple[str, int], expect: int | None) -> bytes:
        """Time every query through a RawClient; returns the first answer's body."""
        client = RawClient(*address)
        first: list[bytes] = []

        def ask(conv_id: str, runtime_key: str) -> bytes:
            status, body = client.get(target(conv_id, runtime_key))
            if status != 200:
                raise SystemExit(f"HTTP {status}: {body[:200]!r}")
            return body

        def count(body: bytes) -> int:
            if not first:
                first.append(body)
            return items_of(body)

        try:
            with step(bar, label, len(queries)) as advance:
                samples[key] = timed(queries, ask, count, advance, expect)[warmup:]
        finally:
            client.close()
        return first[0]

    with tempfile.TemporaryDirectory(prefix="turnsim-bench-") as tmp, progress() as bar:
        path = os.path.join(tmp, "query.db")
        with step(bar, f"database ({conversations * per_conv:,} snapshots)"):
            rows = build_database(path, conversations, per_conv)

        conn = connect(path, read_only=True)
        try:

            def direct(conv_id: str, runtime_key: str) -> list[Any]:
                sql, params = list_sql(
                    TurnQuery(conv_id=conv_id, runtime_key=runtime_key, limit=LIMIT)
                )
                return conn.execute(sql, params).fetchall()

            with step(bar, "direct SQL", len(queries)) as advance:
                samples["sql"] = timed(queries, direct, len, advance)[warmup:]

            def direct_list(_: str, __: str) -> list[Any]:
                records = conn.execute(CONVERSATIONS_SQL).fetchall()
                counts = dict(conn.execute(TURN_COUNTS_SQL))
                return [(*r, counts.get(r[0], 0)) for r in records]

            with step(bar, "direct SQL, conversation list", len(lists)) as advance:
                samples["list_sql"] = timed(lists, direct_list, len, advance, conversations)[1:]

            def by_inference(conv_id: str, inference_id: str) -> list[Any]:
                query = TurnQuery(conv_id=conv_id or None, inference_id=inference_id, limit=LIMIT)
                return conn.execute(*list_sql(query)).fetchall()

            for key, with_conv in (("inference_conv", True), ("inference_alone", False)):
                asked = [(c if with_conv else "", i) for c, i in inferences]
                with step(bar, f"direct SQL, {key.replace('_', ' ')}", len(asked)) as advance:
                    samples[key] = timed(asked, by_inference, len, advance, 4)[1:]
        finally:
            conn.close()

        async def in_process() -> None:
            store = await SQLiteTurnStore.open(path, read_only=True)
            try:
                for key, label in (
                    ("rows", "SQLiteTurnStore.list_rows in-process"),
                    ("store", "SQLiteTurnStore.list in-process"),
                ):
                    out = []
                    with step(bar, label, len(queries)) as advance:
                        for conv_id, runtime_key in queries:
                            query = TurnQuery(conv_id=conv_id, runtime_key=runtime_key, limit=LIMIT)
                            started = time.perf_counter()
                            if key == "rows":
                                got = await store.list_rows(query)
                            else:
                                got = await store.list(query)
                            out.append(time.perf_counter() - started)
                            assert len(got) == LIMIT
                            advance()
                    samples[key] = out[warmup:]
            finally:
                await store.close()

        anyio.run(in_process, backend="asyncio")

        proc, address = start_server(turnsim_serve(path), Path(tmp) / "serve.log")
        try:
            page = over_http("http", "HTTP /api/debug/turns", address, LIMIT)
            client = http.client.HTTPConnection(*address, timeout=30)
            try:

                def with_http_client(conv_id: str, runtime_key: str) -> list[Any]:
                    client.request("GET", target(conv_id, runtime_key))
                    response = client.getresponse()
                    body = response.read()
                    if response.status != 200:
                        raise SystemExit(f"HTTP {response.status}: {body[:200]!r}")
                    return json.loads(body)["items"]

                with step(bar, "HTTP, http.client + json.loads", len(queries)) as advance:
                    samples["http_client"] = timed(queries, with_http_client, len, advance)[warmup:]
            finally:
                client.close()
            raw = RawClient(*address)
            try:

                def list_over_http(_: str, __: str) -> bytes:
                    status, body = raw.get("/api/debug/conversations")
                    if status != 200:
                        raise SystemExit(f"HTTP {status}: {body[:200]!r}")
                    return body

                with step(bar, "HTTP /api/debug/conversations", len(lists)) as advance:
                    samples["list_http"] = timed(
                        lists, list_over_http, items_of, advance, conversations
                    )[1:]
            finally:
                raw.close()
        finally:
            stop_server(proc)

        page_file = Path(tmp) / "page.json"
        page_file.write_bytes(page)
        small_file = Path(tmp) / "small.json"
        small_file.write_bytes(SMALL_BODY)
        for key, label, argv, expect in (
            ("floor_small", "HTTP floor: small fixed JSON", floor_server("floor", small_file), 0),
            ("floor_page", "HTTP floor: fixed page", floor_server("floor", page_file), LIMIT),
            ("client", "client alone: canned page", floor_server("canned", page_file), LIMIT),
        ):
            proc, address = start_server(argv, Path(tmp) / f"{key}.log")
            try:
                over_http(key, label, address, expect)
            finally:
                stop_server(proc)

    def stats(key: str) -> tuple[float, float, float]:
        s = samples[key]
        return percentile(s, 50) * 1e3, percentile(s, 99) * 1e3, sum(s) / len(s) * 1e3

    kib = len(page) / 1024
    labels = {
        "http": "HTTP GET /api/debug/turns (turnsim serve), raw-socket client",
        "http_client": "  the same, http.client + json.loads in the clock",
        "floor_small": "HTTP floor: fixed small JSON, same stack, no store",
        "floor_page": f"HTTP floor: fixed {kib:.0f} KiB page, same stack, no store",
        "client": f"client alone: canned {kib:.0f} KiB page, plain socket server",
        "rows": "SQLiteTurnStore.list_rows, in-process (the API's read)",
        "store": "SQLiteTurnStore.list, in-process",
        "sql": "direct SQL (list_sql on sqlite3)",
        "list_http": f"HTTP GET /api/debug/conversations ({conversations:,} conversations)",
        "list_sql": "  direct SQL: the conversation rows and their turn counts",
        "inference_conv": "direct SQL: inference_id with its conv_id (indexed)",
        "inference_alone": "direct SQL: inference_id alone, no conv_id (scans newest first)",
    }
    for key, label in labels.items():
        report.row(label, len(samples[key]), *stats(key))
    report.title = (
        f"Debug query at {rows:,} snapshots: conv_id + runtime_key, limit {LIMIT}, "
        "one request at a time"
    )
    http50, http99, _ = stats("http")
    sql50, sql99, _ = stats("sql")
    report.ratio(
        "debug query p50: HTTP / direct SQL",
        http50 / sql50,
        GOAL,
        note="HTTP = send to last body byte on one keep-alive socket (RawClient); the JSON "
        "is decoded and counted after the clock stops",
    )
    report.ratio("debug query p99: HTTP / direct SQL", http99 / sql99)
    report.ratio(
        "debug query p50: HTTP via http.client + json.loads / direct SQL",
        stats("http_client")[0] / sql50,
    )
    report.ratio(
        "HTTP floor p50 (fixed page, no store) / direct SQL",
        stats("floor_page")[0] / sql50,
        note="what Hypercorn + Starlette + the request log + the client cost with no store "
        "read and no rendering",
    )
    report.ratio("debug query p50: store.list in-process / direct SQL", stats("store")[0] / sql50)
    report.ratio(
        "conversation list p50: HTTP / direct SQL",
        stats("list_http")[0] / stats("list_sql")[0],
        note="every conversation with its turn count: two reads, rendered as JSON",
    )
    report.details = {
        "snapshots": rows,
        "conversations": conversations,
        "requests": asks,
        "warmup": warmup,
        "page_bytes": len(page),
        "ms": {k: dict(zip(("p50", "p99", "mean"), stats(k), strict=True)) for k in labels},
    }
    report.finish()
    return report


def serve_internal(argv: Sequence[str]) -> bool:
    """Run one of this bench's own servers when asked to (``--serve-floor|canned FILE``)."""
    if len(argv) != 2 or argv[0] not in ("--serve-floor", "--serve-canned"):
        return False
    body = Path(argv[1]).read_bytes()
    (serve_floor if argv[0] == "--serve-floor" else serve_canned)(body)
    return True


if __name__ == "__main__":
    if not serve_internal(sys.argv[1:]):
        main()
