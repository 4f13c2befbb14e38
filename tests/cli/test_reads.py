"""`turnsim turns` and `turnsim history` mirror the API's reads: the same filters, and
with --json the very body the endpoint answers."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner

from persisters.sqlite_store import SQLiteTurnStore
from sim.cli.main import cli
from tests.api.api_fixtures import build_database, client_for


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("reads") / "story.db"
    anyio.run(build_database, path)
    return path


def api_body(db: Path, url: str) -> bytes:
    async def main() -> bytes:
        store = await SQLiteTurnStore.open(db, read_only=True)
        try:
            async with client_for(store) as http:
                return (await http.get(url)).content
        finally:
            await store.close()

    return anyio.run(main)


def turnsim(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("options", "query"),
    [
        ((), ""),
        (("--conv", "c1"), "?conv_id=c1"),
        (("--conv", "c2", "--runtime", "planner@v1"), "?conv_id=c2&runtime_key=planner@v1"),
        (("--phase", "final", "--limit", "2"), "?phase=final&limit=2"),
        (("--session", "s1", "--since", "1700000000120"), "?session_id=s1&since_ms=1700000000120"),
        (("--conv", "c1", "--as-of-ms", "1700000000020"), "?conv_id=c1&as_of_ms=1700000000020"),
    ],
)
def test_turns_json_is_the_endpoint_body(story: Path, options: tuple[str, ...], query: str) -> None:
    code, out, err = turnsim("turns", "--db", str(story), "--json", *options)
    assert code == 0, err
    assert out.encode() == api_body(story, f"/api/debug/turns{query}") + b"\n"
    assert json.loads(out)["items"]


def test_turns_as_of_ms_leaves_out_later_snapshots(story: Path) -> None:
    code, out, err = turnsim("turns", "--db", str(story), "--json", "--as-of-ms", "1700000000020")
    assert code == 0, err
    assert [i["created_at_ms"] for i in json.loads(out)["items"]] == [1700000000020, 1700000000010]
    code, _, err = turnsim("turns", "--db", str(story), "--as-of-ms", "-5")
    assert code == 2 and "--as-of-ms" in err


def test_turns_as_a_table_and_as_csv(story: Path) -> None:
    code, out, _ = turnsim("turns", "--db", str(story), "--conv", "c1", "--phase", "final")
    assert code == 0
    assert "planner@v1" in out and "inventory@v1" in out and "2 snapshots" in out
    code, out, _ = turnsim("turns", "--db", str(story), "--csv", "--runtime", "planner@v1")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows and {r["runtime_key"] for r in rows} == {"planner@v1"}
    assert list(rows[0]) == [
        "conv_id",
        "session_id",
        "turn_id",
        "phase",
        "runtime_key",
        "inference_id",
        "created_at_ms",
        "payload",
    ]


def test_history_json_is_the_endpoint_body(story: Path) -> None:
    for conv in ("c1", "c2", "c3"):
        code, out, err = turnsim("history", "--db", str(story), conv, "--json")
        assert code == 0, err
        assert out.encode() == api_body(story, f"/api/debug/conversations/{conv}") + b"\n"


def test_history_shows_the_pointer_apart_from_the_spans(story: Path) -> None:
    code, out, _ = turnsim("history", "--db", str(story), "c2")
    assert code == 0
    assert "current runtime (the pointer, not history): inventory@v1" in out
    spans = [line for line in out.splitlines() if "@v1" in line and "│" in line]
    assert [s.split("│")[1].strip() for s in spans] == [
        "inventory@v1",
        "planner@v1",
        "inventory@v1",
    ]


def test_bad_input_is_one_line_and_exit_2(story: Path, tmp_path: Path) -> None:
    for args in (
        ("history", "--db", str(story), "nope"),
        ("turns", "--db", str(tmp_path / "missing.db")),
        ("turns", "--db", str(story), "--limit", "0"),
        ("turns", "--db", str(story), "--json", "--csv"),
    ):
        code, out, err = turnsim(*args)
        assert code == 2, (args, out, err)
        assert err.startswith("turnsim: ") and err.count("\n") == 1, err
