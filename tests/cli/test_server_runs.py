"""The scenario suite on the server stores, end to end through the command line.

`turnsim run scenarios/ --store postgresql://... | mysql://...` passes and writes the same
log as on SQLite (only the stores' own error texts differ); `--db NAME` keeps a run that
`db doctor DSN` and `serve --db DSN` then read; two `turnsim run` processes writing one
server database at once lose nothing and never mix one run's turns into the other's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from click.testing import CliRunner

from persisters.model import MAX_LIMIT, TurnQuery
from persisters.sqlite_store import SQLiteTurnStore
from persisters.stores import StoreSpec
from sim.api.app import create_app
from sim.api.serve import open_served_store
from sim.cli.main import cli
from tests.servers import drop_namespace, need, unique_name

#: What `turnsim run scenarios/` ends with when every shipped scenario passes.
_SHIPPED = Path(__file__).resolve().parents[2] / "scenarios"
SUITE_PASSED = f"{len(list(_SHIPPED.glob('*.yaml')))} passed, 0 failed"

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"
SERVERS = ["postgresql", "mysql"]
#: Two halves of the suite, for two processes at once (no faults: every turn is stored).
FIRST = ("inventory_to_planner", "inflight_switch", "switch_back_and_forth", "tool_rounds")
SECOND = ("concurrent_conversations", "random_switches", "second_writer")


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, str]]:
    """(kind, DSN, a namespace name dropped after the test)."""
    kind = request.param
    dsn = need(kind)
    name = unique_name()
    yield kind, dsn, name
    drop_namespace(kind, name)


def _events(path: Path) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in path.read_text().splitlines()]
    for event in events:  # the store's own words for a refused write differ by store
        if "error" in event:
            event["error"] = "<store error text>"
    return events


@pytest.mark.parametrize("kind", SERVERS)
def test_the_suite_passes_with_the_log_it_writes_on_sqlite(kind: str, tmp_path: Path) -> None:
    dsn = need(kind)
    code, out, err = invoke(
        "run", str(SCENARIOS), "--store", dsn, "--log-file", str(tmp_path / "server.jsonl")
    )
    assert code == 0, out + err
    assert SUITE_PASSED in out
    code, _, _ = invoke("run", str(SCENARIOS), "--log-file", str(tmp_path / "sqlite.jsonl"))
    assert code == 0
    server_log, sqlite_log = _events(tmp_path / "server.jsonl"), _events(tmp_path / "sqlite.jsonl")
    assert len(server_log) == len(sqlite_log) > 500
    assert server_log == sqlite_log
    raw = (tmp_path / "server.jsonl").read_text()
    assert "turnsim_" not in raw  # no scratch namespace name reaches the log


def test_bug_variants_are_caught_on_the_servers() -> None:
    for kind in SERVERS:
        dsn = need(kind)
        code, out, _ = invoke(
            "run",
            str(SCENARIOS / "second_writer.yaml"),
            "--store",
            dsn,
            "--variant",
            "upsert-overwrite",
        )
        assert code == 1, out


def test_a_kept_run_is_read_by_doctor_and_the_api(server: tuple[str, str, str]) -> None:
    kind, dsn, name = server
    code, out, err = invoke(
        "run", str(SCENARIOS / "inflight_switch.yaml"), "--store", dsn, "--db", name
    )
    assert code == 0, out + err
    kept = StoreSpec.parse(dsn).dsn_for(name)
    # the same scenario into the same namespace again: refused, nothing mixed in
    code, _, err = invoke(
        "run", str(SCENARIOS / "inflight_switch.yaml"), "--store", dsn, "--db", name
    )
    assert code == 2 and "already holds conversations" in err
    code, out, _ = invoke("db", "doctor", kept, "--json")
    report = json.loads(out)
    assert code == 0, out
    assert report["healthy"] is True
    names = [c["name"] for c in report["checks"]]
    assert names[:4] == [
        "required_columns",
        "required_indexes",
        "append_only_snapshots",
        "write_once_turns",
    ]
    assert next(c for c in report["checks"] if c["name"] == "write_once_turns")["severity"] == "ok"
    phases = next(c for c in report["checks"] if c["name"] == "phase_runtime_agreement")
    assert ("string_agg" if kind == "postgresql" else "GROUP_CONCAT") in phases["sql"]
    assert all(c["severity"] in ("ok", "warning", "info") for c in report["checks"])

    async def read_through_the_api() -> None:
        store = await open_served_store(kept)
        try:
            transport = httpx.ASGITransport(app=create_app(store))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                convs = (await client.get("/api/debug/conversations")).json()["items"]
                assert [c["conv_id"] for c in convs] == ["inflight-switch.c1"]
                turns = (await client.get("/api/debug/turns?conv_id=inflight-switch.c1")).json()
                assert {t["runtime_key"] for t in turns["items"]} == {
                    "inventory@v1",
                    "planner@v1",
                }
        finally:
            await store.close()

    anyio.run(read_through_the_api)


def test_a_missing_namespace_is_refused_by_serve_and_reported_by_doctor(
    server: tuple[str, str, str],
) -> None:
    kind, dsn, name = server
    absent = StoreSpec.parse(dsn).dsn_for(name)
    if kind == "mysql":  # a MySQL DSN must name a database that exists to connect at all
        code, _, err = invoke("db", "doctor", absent)
        assert code == 2 and name in err
        return
    code, out, _ = invoke("db", "doctor", absent)
    assert code == 1
    assert "missing column(s)" in out
    with pytest.raises(Exception, match="no turnsim tables"):
        anyio.run(open_served_store, absent)


def _stored(rows: Any) -> list[tuple[Any, ...]]:
    return sorted((t.conv_id, t.session_id, t.turn_id, t.runtime_key, t.inference_id) for t in rows)


async def _state(store: Any) -> tuple[list[tuple[Any, ...]], int]:
    turns = []
    for record in await store.conversations.list():
        turns += await store.list_turns(record.conv_id)
    snapshots = await store.list(TurnQuery(limit=MAX_LIMIT))
    return _stored(turns), len(snapshots)


def test_two_processes_writing_one_server_database_lose_nothing_and_never_mix(
    server: tuple[str, str, str], tmp_path: Path
) -> None:
    _, dsn, name = server
    halves = {"first": FIRST, "second": SECOND}
    procs = {
        half: subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sim",
                "run",
                *(str(SCENARIOS / f"{s}.yaml") for s in files),
                "--store",
                dsn,
                "--db",
                name,
                "--json",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for half, files in halves.items()
    }
    for half, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, (half, out[-2000:], err[-2000:])
    # the same halves, each alone in its own SQLite file: what the server must hold
    expected_turns: list[tuple[Any, ...]] = []
    expected_snapshots = 0
    for half, files in halves.items():
        db = tmp_path / f"{half}.db"
        code, out, _ = invoke(
            "run", *(str(SCENARIOS / f"{s}.yaml") for s in files), "--db", str(db)
        )
        assert code == 0, out

        async def read(path: Path = db) -> tuple[list[tuple[Any, ...]], int]:
            async with await SQLiteTurnStore.open(path, read_only=True) as store:
                return await _state(store)

        turns, snapshots = anyio.run(read)
        expected_turns += turns
        expected_snapshots += snapshots

    async def read_server() -> tuple[list[tuple[Any, ...]], int]:
        store = await StoreSpec.parse(StoreSpec.parse(dsn).dsn_for(name)).open_existing()
        try:
            return await _state(store)
        finally:
            await store.close()

    turns, snapshots = anyio.run(read_server)
    assert turns == sorted(expected_turns)
    assert snapshots == expected_snapshots
    prefixes = {s.replace("_", "-") for s in (*FIRST, *SECOND)}
    assert {t[0].split(".")[0] for t in turns} == prefixes


@pytest.mark.parametrize("kind", SERVERS)
def test_explore_runs_each_seed_on_its_own_scratch_namespace(kind: str, tmp_path: Path) -> None:
    dsn = need(kind)
    code, out, err = invoke(
        "explore", str(SCENARIOS / "random_switches.yaml"), "--seeds", "2", "--store", dsn,
        "--no-progress", "--out", str(tmp_path / "report"), "--json",
    )  # fmt: skip
    assert code == 0, out + err
    report = json.loads(out)
    assert report["passed"] is True
    assert report["scenarios"][0]["runs"] == 2
