"""The debug queries' filters are answered from their indexes (``EXPLAIN QUERY PLAN``).

Not timed: bench/query.py measures the latency; this only pins the plan, so that a schema
or SQL change that turns an indexed lookup into a scan (or a sort) fails here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from persisters.model import TurnQuery
from persisters.sqlite_store import TURN_COUNTS_SQL, SQLiteTurnStore, list_sql

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteTurnStore]:
    opened = await SQLiteTurnStore.open(tmp_path / "plans.db")
    try:
        yield opened
    finally:
        await opened.close()


async def plan(store: SQLiteTurnStore, sql: str, params: list[object]) -> str:
    rows = await store.execute(f"EXPLAIN QUERY PLAN {sql}", params)
    return "\n".join(str(row[-1]) for row in rows)


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (
            TurnQuery(conv_id="c1", runtime_key="inventory@v1", limit=50),
            "turn_snapshots_by_conv_runtime_created",
        ),
        (
            TurnQuery(conv_id="c1", inference_id="i1", limit=50),
            "turn_snapshots_by_conv_inference_created",
        ),
    ],
    ids=["runtime", "inference"],
)
async def test_snapshot_filters_use_their_index(
    store: SQLiteTurnStore, query: TurnQuery, index: str
) -> None:
    shown = await plan(store, *list_sql(query))
    assert f"USING INDEX {index} " in shown, shown
    assert "TEMP B-TREE" not in shown, f"the newest-first order needs a sort:\n{shown}"


@pytest.mark.parametrize(
    ("column", "index"),
    [
        ("runtime_key", "turns_by_conv_runtime_updated"),
        ("inference_id", "turns_by_conv_inference_updated"),
    ],
)
async def test_turn_filters_use_their_index(
    store: SQLiteTurnStore, column: str, index: str
) -> None:
    sql = (
        "SELECT conv_id, session_id, turn_id FROM turns "
        f"WHERE conv_id = ? AND {column} = ? ORDER BY updated_at_ms DESC LIMIT 50"
    )
    shown = await plan(store, sql, ["c1", "x"])
    assert f"USING INDEX {index} " in shown, shown
    assert "TEMP B-TREE" not in shown, shown


async def test_turn_counts_scan_an_index_without_sorting(store: SQLiteTurnStore) -> None:
    """``/conversations`` counts every conversation's turns from a covering index, in order."""
    shown = await plan(store, TURN_COUNTS_SQL, [])
    assert "USING COVERING INDEX" in shown, shown
    assert "TEMP B-TREE" not in shown, shown
