"""Values another program may have stored in any column: never a 500, never a value
against the OpenAPI type; the row is shown in its type or left out, and `db doctor` counts
it (`stored_types`).

For every column of the three tables and every hostile value (BLOBs, undecodable bytes,
text, floats, negative and huge numbers, a phase no snapshot has), one extra row is
written with raw SQL beside the story, and every endpoint answers 200 (or 404) with a
body the OpenAPI document accepts.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from persisters.sqlite_store import SQLiteTurnStore
from sim.api.app import create_app
from sim.ops.doctor import doctor
from tests.api.api_fixtures import build_database, checked

HOSTILE: list[Any] = [
    b"\x00\xff\xfe not text",
    b"inventory@v1",
    "not a number",
    1.5,
    1e300,
    -5,
    2**63 - 1,
    "",
    "bogus-phase",
]

COLUMNS = {
    "turn_snapshots": [
        "conv_id",
        "session_id",
        "turn_id",
        "phase",
        "created_at_ms",
        "payload",
        "runtime_key",
        "inference_id",
    ],
    "turns": ["session_id", "turn_id", "runtime_key", "inference_id", "updated_at_ms"],
    "conversations": ["session_id", "current_runtime_key", "last_activity_ms"],
}

ENDPOINTS = [
    ("/api/debug/conversations", "/api/debug/conversations"),
    ("/api/debug/conversations/c1", "/api/debug/conversations/{conv_id}"),
    ("/api/debug/conversations/cx", "/api/debug/conversations/{conv_id}"),
    ("/api/debug/turns?limit=1000", "/api/debug/turns"),
    ("/api/debug/turns?conv_id=c1", "/api/debug/turns"),
    ("/api/debug/turn/c1/s1/c1-t1", "/api/debug/turn/{conv_id}/{session_id}/{turn_id}"),
    ("/api/debug/turn/cx/sx/tx", "/api/debug/turn/{conv_id}/{session_id}/{turn_id}"),
]


def poison(path: Path, table: str, column: str, value: Any) -> None:
    """One more row: a copy of the story's c1-t1 (as conversation cx / turn tx) with
    ``column`` holding ``value``; the write-once triggers do not stop an INSERT."""
    conn = sqlite3.connect(path)
    try:
        cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
        cols = [c for c in cols if c != "snapshot_id"]
        where = {
            "turn_snapshots": "turn_id = 'c1-t1'",
            "turns": "turn_id = 'c1-t1'",
            "conversations": "conv_id = 'c1'",
        }[table]
        row = dict(
            zip(
                cols,
                conn.execute(
                    f"SELECT {', '.join(cols)} FROM {table} WHERE {where} LIMIT 1"
                ).fetchone(),
                strict=True,
            )
        )
        if table == "conversations":
            row["conv_id"] = "cx"
        else:
            row.update(conv_id="cx", session_id="sx", turn_id="tx")
        row[column] = value
        conn.execute(
            f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
            list(row.values()),
        )
        conn.commit()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return anyio.run(build_database, tmp_path_factory.mktemp("story") / "story.db")


async def answers(path: Path) -> list[tuple[str, int]]:
    store = await SQLiteTurnStore.open(path, read_only=True)
    seen = []
    try:
        transport = httpx.ASGITransport(app=create_app(store), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            for url, template in ENDPOINTS:
                for target in (url, url.replace("/api/debug/", "/api/debug/ui/", 1)):
                    response = await http.get(target)
                    seen.append((target, response.status_code))
                    if "/ui/" not in target:
                        assert response.status_code in (200, 404), (target, response.text)
                        checked(response, template)
    finally:
        await store.close()
    return seen


@pytest.mark.anyio
@pytest.mark.parametrize("table", sorted(COLUMNS))
async def test_every_endpoint_survives_every_hostile_value(
    story: Path, tmp_path: Path, table: str
) -> None:
    for column in COLUMNS[table]:
        for n, value in enumerate(HOSTILE):
            path = tmp_path / f"{table}-{column}-{n}.db"
            path.write_bytes(story.read_bytes())
            poison(path, table, column, value)
            for target, status in await answers(path):
                assert status < 500, (table, column, value, target, status)


def test_doctor_counts_rows_with_values_of_the_wrong_type(story: Path, tmp_path: Path) -> None:
    clean = tmp_path / "clean.db"
    clean.write_bytes(story.read_bytes())
    assert doctor(clean).check("stored_types").severity == "ok"
    path = tmp_path / "odd.db"
    path.write_bytes(story.read_bytes())
    poison(path, "turn_snapshots", "runtime_key", b"\x00\xff")
    poison(path, "turns", "updated_at_ms", "soon")
    poison(path, "conversations", "last_activity_ms", -1)
    check = doctor(path).check("stored_types")
    assert check.severity == "warning" and check.row_count == 3, check
