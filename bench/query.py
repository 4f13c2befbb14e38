"""Debug query: ``/api/debug/turns?conv_id=..&runtime_key=..&limit=50`` at 1,000,000 rows.

The database holds 1,000,000 snapshots in the current schema (5,000 conversations x 50
turns x 4 phases, the runtime switching every 5 turns among three, so every (conversation,
runtime) pair matches more than 50 rows), written in SQL and indexed like the store.

* measured: the endpoint over HTTP, served by ``turnsim serve`` in its own process
  (``--log-level warning``: no line per request), one keep-alive ``http.client``
  connection asking one request at a time; latency per request, from send to the JSON
  body parsed (the standard library's client: ``httpx`` adds about 0.6 ms per request);
* baseline: the same query as direct SQL (``persisters.sqlite_store.list_sql`` on a
  read-only ``sqlite3`` connection to the same file), fetching every row.

Also shown: ``SQLiteTurnStore.list`` in-process (the worker-thread hop and the row
objects, no HTTP). Every path asks the same (conversation, runtime) pairs in the same
order, after a warm-up.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import anyio
from figures import Report, err, parse_args, percentile, progress, step
from workload import fresh_database

from persisters.schema import INDEXES
from persisters.sqlite_store import SQLiteTurnStore, connect, list_sql
from sim.model import TurnQuery

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


def timed(queries: list[tuple[str, str]], ask: Callable[[str, str], int], advance) -> list[float]:
    samples = []
    for conv_id, runtime_key in queries:
        started = time.perf_counter()
        got = ask(conv_id, runtime_key)
        samples.append(time.perf_counter() - started)
        if got != LIMIT:
            raise SystemExit(f"{conv_id}/{runtime_key}: {got} rows, expected {LIMIT}")
        advance()
    return samples


def start_server(path: str, log: Path) -> tuple[subprocess.Popen[bytes], tuple[str, int]]:
    """``turnsim serve`` on a free port; returns the process and its host and port."""
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sim",
                "serve",
                "--db",
                path,
                "--port",
                "0",
                "--log-level",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(r"at http://(\S+?):(\d+)/api/debug/", log.read_text(errors="replace"))
        if found:
            return proc, (found.group(1), int(found.group(2)))
        if proc.poll() is not None:
            raise SystemExit(f"turnsim serve exited: {log.read_text(errors='replace')}")
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("turnsim serve did not announce its URL within 30 s")


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(__doc__, argv)
    conversations, per_conv = (250, 200) if args.quick else (5000, 200)
    asks, warmup = (200, 20) if args.quick else (1000, 100)
    rng = random.Random(11)
    queries = [
        (f"c{rng.randrange(conversations):05d}", rng.choice(RUNTIMES)) for _ in range(asks + warmup)
    ]
    report = Report(
        "query",
        "Debug query",
        args.quick,
        columns=["path", "requests", "p50 ms", "p99 ms", "mean ms"],
    )
    samples: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="turnsim-bench-") as tmp, progress() as bar:
        path = os.path.join(tmp, "query.db")
        with step(bar, f"database ({conversations * per_conv:,} snapshots)"):
            rows = build_database(path, conversations, per_conv)

        conn = connect(path, read_only=True)
        try:

            def direct(conv_id: str, runtime_key: str) -> int:
                sql, params = list_sql(
                    TurnQuery(conv_id=conv_id, runtime_key=runtime_key, limit=LIMIT)
                )
                return len(conn.execute(sql, params).fetchall())

            with step(bar, "direct SQL", len(queries)) as advance:
                samples["sql"] = timed(queries, direct, advance)[warmup:]
        finally:
            conn.close()

        async def in_process() -> list[float]:
            store = await SQLiteTurnStore.open(path, read_only=True)
            out = []
            try:
                with step(bar, "SQLiteTurnStore.list in-process", len(queries)) as advance:
                    for conv_id, runtime_key in queries:
                        started = time.perf_counter()
                        got = await store.list(
                            TurnQuery(conv_id=conv_id, runtime_key=runtime_key, limit=LIMIT)
                        )
                        out.append(time.perf_counter() - started)
                        assert len(got) == LIMIT
                        advance()
            finally:
                await store.close()
            return out[warmup:]

        samples["store"] = anyio.run(in_process, backend="asyncio")

        proc, (host, port) = start_server(path, Path(tmp) / "serve.log")
        client = http.client.HTTPConnection(host, port, timeout=30)
        try:

            def over_http(conv_id: str, runtime_key: str) -> int:
                query = urlencode({"conv_id": conv_id, "runtime_key": runtime_key, "limit": LIMIT})
                client.request("GET", f"/api/debug/turns?{query}")
                response = client.getresponse()
                body = response.read()
                if response.status != 200:
                    raise SystemExit(f"HTTP {response.status}: {body[:200]!r}")
                return len(json.loads(body)["items"])

            with step(bar, "HTTP /api/debug/turns", len(queries)) as advance:
                samples["http"] = timed(queries, over_http, advance)[warmup:]
        finally:
            client.close()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                err.print("[red]turnsim serve did not stop on SIGTERM; killed[/]")

    def stats(key: str) -> tuple[float, float, float]:
        s = samples[key]
        return percentile(s, 50) * 1e3, percentile(s, 99) * 1e3, sum(s) / len(s) * 1e3

    labels = {
        "http": "HTTP GET /api/debug/turns (turnsim serve)",
        "store": "SQLiteTurnStore.list, in-process",
        "sql": "direct SQL (list_sql on sqlite3)",
    }
    for key, label in labels.items():
        report.row(label, len(samples[key]), *stats(key))
    report.title = (
        f"Debug query at {rows:,} snapshots: conv_id + runtime_key, limit {LIMIT}, "
        "one request at a time"
    )
    http50, http99, _ = stats("http")
    sql50, sql99, _ = stats("sql")
    store50, _, _ = stats("store")
    report.ratio("debug query p50: HTTP / direct SQL", http50 / sql50, GOAL)
    report.ratio("debug query p99: HTTP / direct SQL", http99 / sql99)
    report.ratio("debug query p50: store.list in-process / direct SQL", store50 / sql50)
    report.details = {
        "snapshots": rows,
        "conversations": conversations,
        "requests": asks,
        "warmup": warmup,
        "ms": {k: dict(zip(("p50", "p99", "mean"), stats(k), strict=True)) for k in labels},
    }
    report.finish()
    return report


if __name__ == "__main__":
    main()
