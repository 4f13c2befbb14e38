"""The debug API over a database produced by the simulator's real pipelines."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from sim.api.app import create_app
from sim.api.client import DebugClient
from sim.api.serve import open_served_store
from sim.runtime.variants import build
from sim.scenario.parse import load_scenario
from sim.scenario.runner import run_scenario

pytestmark = pytest.mark.anyio

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "inventory_to_planner.yaml"
CONV = "inventory-to-planner.c1"


async def _client_for(db: Path, variants: tuple[str, ...] = ()) -> tuple[DebugClient, object]:
    store = await open_served_store(db)
    app = create_app(store, read_path=build(variants).read_path)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    return DebugClient(http), store


async def test_per_turn_runtime_through_the_api_after_a_real_run(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    result = await run_scenario(load_scenario(SCENARIO), db=db)
    assert result.passed, result.describe()
    started = [e for e in result.events if e["event"] == "inference.started"]
    truth = {e["turn_id"]: (e["runtime_key"], e["inference_id"]) for e in started}
    assert [r for r, _ in truth.values()] == ["inventory@v1", "planner@v1"]

    client, store = await _client_for(db)
    async with client.http:
        listed = await client.turns(conv_id=CONV, limit=1000)
        assert {(i.turn_id, i.runtime_key, i.inference_id) for i in listed.items} == {
            (t, r, i) for t, (r, i) in truth.items()
        }
        for turn_id, (runtime, inference) in truth.items():
            detail = await client.turn(CONV, "s1", turn_id)
            assert (detail.runtime_key, detail.inference_id) == (runtime, inference)
            assert {(p.runtime_key, p.inference_id) for p in detail.items} == {(runtime, inference)}
            assert detail.items[0].phase == "pre_inference"
        conv = await client.conversation(CONV)
        assert conv.current_runtime_key == "planner@v1"
        assert [(s.runtime_key, s.turn_count) for s in conv.runtime_history] == [
            ("inventory@v1", 1),
            ("planner@v1", 1),
        ]
        by_runtime = await client.turns(conv_id=CONV, runtime_key="inventory@v1")
        assert {i.turn_id for i in by_runtime.items} == {started[0]["turn_id"]}
    await store.close()


async def test_pointer_as_history_variant_shows_the_old_bug_in_the_api(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    await run_scenario(load_scenario(SCENARIO), db=db)
    client, store = await _client_for(db, ("pointer-as-history",))
    async with client.http:
        listed = await client.turns(conv_id=CONV)
        assert {i.runtime_key for i in listed.items} == {"planner@v1"}  # history erased
    await store.close()
