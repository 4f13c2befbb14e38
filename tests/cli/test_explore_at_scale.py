"""`turnsim explore` at scale: the report does not depend on what ran it.

One reference exploration (`--jobs 1`: in this process) of two scenarios under two bug
variants, with several distinct failures and shrinking, is compared with the same
exploration on 2 worker processes, on a Dask `LocalCluster` of 2 worker processes, and as
two `--shard`s merged by `turnsim explore merge`: the findings (report.json without its
`run` section, which says how it ran) and the falsifying example files must be identical.
Then the failure database, `--rerun` and the SQLite re-check of a failing seed.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import attrs
import pytest
from click.testing import CliRunner

import persisters.stores
from persisters.memory_store import MemoryTurnStore
from persisters.model import TurnQuery, TurnSnapshot
from sim.cli.main import cli
from sim.scenario.batches import DIVERGENCE, SeedBatch, Source, first_difference, run_batch
from sim.scenario.executors import InProcess, Processes
from sim.scenario.explore import Listener, Settings, Target, explore, plan
from sim.scenario.failure_db import FailureDatabase
from sim.scenario.parse import read_scenario_text

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
RANDOM = SCENARIOS / "random_switches.yaml"
INFLIGHT = SCENARIOS / "inflight_switch.yaml"
#: Two scenarios, two variants at once: 16 failing seeds in two distinct failures.
ARGS = (
    str(RANDOM),
    str(INFLIGHT),
    "--seeds",
    "8",
    "--variant",
    "upsert-overwrite+late-snapshot-runtime",
    "--shrink-runs",
    "20",
    "--no-failure-db",
    "--no-progress",
)


@contextlib.contextmanager
def inside(folder: Path) -> Iterator[Path]:
    """Run from ``folder``, so that every exploration writes to the same relative
    ``report/`` and the reports' paths can be compared."""
    folder.mkdir(parents=True, exist_ok=True)
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield folder
    finally:
        os.chdir(before)


def turnsim(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def findings(report_dir: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """What an exploration found: its report without ``run``, and its example files."""
    doc = json.loads((report_dir / "report.json").read_text())
    doc.pop("run")
    return doc, {p.name: p.read_text() for p in sorted(report_dir.glob("*.yaml"))}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, str]]:
    with inside(tmp_path_factory.mktemp("jobs1")) as here:
        result = turnsim("explore", *ARGS, "--jobs", "1", "--out", "report")
        assert result.exit_code == 1, result.output
        return findings(here / "report")


def test_the_reference_has_distinct_failures_one_group_each(
    reference: tuple[dict[str, Any], dict[str, str]],
) -> None:
    doc, files = reference
    random, inflight = doc["scenarios"]
    assert random["failed_seeds"] == inflight["failed_seeds"] == list(range(8))
    # (on the SQLite file each re-check runs on, the write-once trigger refuses the
    # rewrites upsert-overwrite lets through, so random_switches' stored turns stay right)
    assert [g["first_violation"] for g in random["groups"]] == ["runtime-bound-at-start"]
    assert [g["first_violation"] for g in inflight["groups"]] == ["expectation:expect_turn"]
    for scenario in (random, inflight):
        grouped = sorted(s for g in scenario["groups"] for s in g["seeds"])
        assert grouped == scenario["failed_seeds"]  # each failing seed in exactly one group
    assert len(files) == 2 and doc["summary"]["groups"] == 2


def test_worker_processes_give_the_same_report(
    reference: tuple[dict[str, Any], dict[str, str]], tmp_path: Path
) -> None:
    with inside(tmp_path):
        result = turnsim("explore", *ARGS, "--jobs", "2", "--out", "report")
        assert result.exit_code == 1, result.output
        assert "on 2 worker processes" in result.output
        assert findings(tmp_path / "report") == reference


def test_a_dask_cluster_gives_the_same_report(
    reference: tuple[dict[str, Any], dict[str, str]], tmp_path: Path
) -> None:
    from distributed import LocalCluster  # the test extra brings it: CI runs this

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        inside(tmp_path),
    ):
        address = cluster.scheduler_address
        result = turnsim("explore", *ARGS, "--scheduler", address, "--out", "report")
    assert result.exit_code == 1, result.output
    assert f"Dask scheduler {address} (2 worker threads)" in result.output
    assert findings(tmp_path / "report") == reference


def test_shards_merge_into_the_report_of_one_run(
    reference: tuple[dict[str, Any], dict[str, str]], tmp_path: Path
) -> None:
    with inside(tmp_path):
        for k in (1, 2):
            shard = turnsim("explore", *ARGS, "--jobs", "1", "--shard", f"{k}/2", "--out", f"s{k}")
            assert shard.exit_code == 1, shard.output
            assert f"shard {k}/2 (4 seeds)" in shard.output
        one = json.loads(Path("s1/report.json").read_text())["scenarios"][0]
        assert one["seeds"] == {"first": 0, "last": 3, "count": 4}
        assert one["shard"] == {"index": 1, "count": 2, "of": {"first": 0, "last": 7, "count": 8}}
        merged = turnsim("explore", "merge", "s2", "s1/report.json", "--out", "report")
        assert merged.exit_code == 1, merged.output
    assert findings(tmp_path / "report") == reference

    with inside(tmp_path):
        partial = turnsim("explore", "merge", "s1", "--out", "partial", "--json")
    doc = json.loads(partial.stdout)
    assert doc["complete"] is False
    assert [s["missing_shards"] for s in doc["scenarios"]] == [["2/2"], ["2/2"]]


@pytest.mark.parametrize(
    ("reports", "message"),
    [
        (["s1", "s1"], "are both shard 1/2"),
        (["whole", "whole"], "without --shard"),
        (["s1", "other"], "not shards of one exploration"),
        (["nothing-here"], "cannot read"),
        (["not-json/report.json"], "not JSON"),
        (["not-a-report/report.json"], "not a turnsim explore report"),
    ],
)
def test_merge_refuses_what_is_not_one_exploration(
    tmp_path: Path, reports: list[str], message: str
) -> None:
    base = (str(INFLIGHT), "--seeds", "4", "--jobs", "1", "--no-shrink", "--no-progress")
    base += ("--no-failure-db",)
    with inside(tmp_path):
        turnsim("explore", *base, "--shard", "1/2", "--out", "s1")
        turnsim("explore", *base, "--out", "whole")
        turnsim("explore", *base, "--shard", "1/3", "--out", "other")
        Path("not-json").mkdir()
        Path("not-json/report.json").write_text("{")
        Path("not-a-report").mkdir()
        Path("not-a-report/report.json").write_text("[]")
        result = turnsim("explore", "merge", *reports)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


# -- the failure database and --rerun ----------------------------------------------------


def test_failing_seeds_are_remembered_and_replayed_first(tmp_path: Path) -> None:
    db = tmp_path / "db"
    common = (str(RANDOM), "--variant", "upsert-overwrite", "--failure-db", str(db))
    common += ("--jobs", "1", "--no-shrink", "--json", "--out", str(tmp_path / "out"))
    first = turnsim("explore", *common, "--seeds", "8")
    failing = json.loads(first.stdout)["scenarios"][0]["failed_seeds"]
    assert failing and len(failing) < 8
    folder = db / "random-switches" / "upsert-overwrite"
    assert sorted(int(p.name) for p in folder.iterdir()) == failing
    assert "never-rewritten" in (folder / str(failing[0])).read_text() or (
        "runtime" in (folder / str(failing[0])).read_text()
    )

    again = json.loads(turnsim("explore", *common, "--start", "100", "--seeds", "4").stdout)
    scenario = again["scenarios"][0]
    assert scenario["replayed"] == failing
    assert scenario["runs"] == 4 + len(failing)
    assert set(failing) <= set(scenario["failed_seeds"])

    # ... and they run before every other seed (the passing seeds 0..7 come after them)
    database = FailureDatabase(db)
    remembered = database.seeds("random-switches", ("upsert-overwrite",))
    assert set(failing) <= set(remembered)
    source = Source(str(RANDOM), read_scenario_text(RANDOM))
    targets = plan([source], ("upsert-overwrite",), range(8), database=database)
    order: list[int] = []

    class Record(Listener):
        def ran(self, found: Any, result: Any) -> None:
            order.extend(result.seeds)

    explore(targets, Settings(shrink=False, batch_size=2), InProcess(), listener=Record())
    assert order[: len(remembered)] == remembered
    assert sorted(order[len(remembered) :]) == sorted(set(range(8)) - set(remembered))


def test_a_remembered_seed_that_passes_is_forgotten(tmp_path: Path) -> None:
    db = tmp_path / "db"
    remembered = db / "random-switches" / "default"
    remembered.mkdir(parents=True)
    (remembered / "5").write_text("an old failure, fixed since\n")
    (remembered / "notes.txt").write_text("not a seed: ignored\n")
    result = turnsim(
        "explore",
        str(RANDOM),
        "--seeds",
        "1",
        "--failure-db",
        str(db),
        "--jobs",
        "1",
        "--json",
        "--out",
        str(tmp_path / "out"),
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["scenarios"][0]["replayed"] == [5]
    assert sorted(p.name for p in remembered.iterdir()) == ["notes.txt"]


def test_rerun_runs_only_the_failures_of_a_report(tmp_path: Path) -> None:
    first = turnsim(
        "explore",
        str(RANDOM),
        "--seeds",
        "8",
        "--variant",
        "upsert-overwrite",
        "--jobs",
        "1",
        "--no-shrink",
        "--json",
        "--out",
        str(tmp_path / "first"),
        "--no-failure-db",
    )
    failing = json.loads(first.stdout)["scenarios"][0]["failed_seeds"]
    rerun = turnsim(
        "explore",
        "--rerun",
        str(tmp_path / "first"),
        "--jobs",
        "1",
        "--no-shrink",
        "--json",
        "--out",
        str(tmp_path / "second"),
        "--no-failure-db",
    )
    assert rerun.exit_code == 1, rerun.output
    scenario = json.loads(rerun.stdout)["scenarios"][0]
    assert scenario["variants"] == ["upsert-overwrite"]
    assert scenario["runs"] == len(failing)
    assert scenario["failed_seeds"] == scenario["replayed"] == failing

    passing = turnsim(
        "explore",
        str(INFLIGHT),
        "--seeds",
        "2",
        "--jobs",
        "1",
        "--out",
        str(tmp_path / "ok"),
        "--no-failure-db",
    )
    assert passing.exit_code == 0
    nothing = turnsim("explore", "--rerun", str(tmp_path / "ok" / "report.json"))
    assert nothing.exit_code == 0 and "nothing to run" in nothing.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rerun", "."], "drop the scenario paths"),
        (["--shard", "3/2"], "K must be between 1 and N"),
        (["--shard", "half"], "expected K/N"),
        (["--jobs", "2", "--scheduler", "tcp://127.0.0.1:9"], "exclude each other"),
        (["--scheduler", "tcp://127.0.0.1:9"], "cannot reach the Dask scheduler"),
        (["--store", "pg"], "names no store"),
    ],
)
def test_bad_scale_options_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = turnsim("explore", str(INFLIGHT), "--out", str(tmp_path), "--no-failure-db", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.stderr


# -- the re-check on SQLite --------------------------------------------------------------


class ForgetfulStore(MemoryTurnStore):
    """A memory store that lists no snapshot: what a store with a bug would do."""

    async def list(self, query: TurnQuery) -> list[TurnSnapshot]:
        return []


def test_a_failure_seen_only_off_sqlite_is_reported_as_a_divergence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(persisters.stores, "MemoryTurnStore", ForgetfulStore)
    source = Source(str(INFLIGHT), read_scenario_text(INFLIGHT))
    outcome = explore(
        [Target(source, (), range(2))], Settings(shrink=False, store="memory"), InProcess()
    )
    found = outcome.explorations[0]
    assert [f.seed for f in found.failed] == [0, 1]
    for f in found.failed:  # the SQLite re-check passed: only the divergence is reported
        (failure,) = f.failures
        assert (failure.kind, failure.name) == ("error", DIVERGENCE)
        assert "ran differently on the memory store and on a SQLite file" in failure.message
        assert f.replay == f"turnsim run {INFLIGHT} --seed {f.seed}"


def test_first_difference_names_the_event_and_fields() -> None:
    a = [{"event": "x", "seq": 1}, {"event": "y", "seq": 2, "error": "a"}]
    assert first_difference(a, [dict(e) for e in a]) is None
    b = [a[0], {"event": "y", "seq": 2, "error": "b"}]
    assert first_difference(a, b) == "event 2 (y vs y) differs in ['error']"
    assert first_difference(a, a[:1]) == "one history has 2 events, the other 1"


def test_a_batch_runs_the_same_on_trio() -> None:
    source = Source(str(RANDOM), read_scenario_text(RANDOM))
    batch = SeedBatch(source, (0, 1, 2, 3), ("upsert-overwrite",))
    on_asyncio = run_batch(batch)
    on_trio = run_batch(attrs.evolve(batch, backend="trio"))
    assert on_asyncio.failed and on_trio.failed == on_asyncio.failed
    assert (on_trio.turns, on_trio.switches) == (on_asyncio.turns, on_asyncio.switches)


# -- an executor that breaks -------------------------------------------------------------


def test_a_worker_that_dies_breaks_the_pool_loudly() -> None:
    pool = Processes(1)
    try:
        with pytest.raises(BrokenProcessPool):
            list(pool.map(os._exit, [3]))
    finally:
        pool.close()


class DiesAfterOneBatch(InProcess):
    def map(self, fn: Any, jobs: Any) -> Any:
        for i, job in enumerate(jobs):
            if i == 1:
                raise BrokenProcessPool("a worker process died")
            yield i, fn(job)


def test_a_broken_executor_ends_the_exploration_with_what_ran() -> None:
    source = Source(str(INFLIGHT), read_scenario_text(INFLIGHT))
    outcome = explore([Target(source, (), range(6))], Settings(batch_size=2), DiesAfterOneBatch())
    assert outcome.explorations[0].runs == 2 and not outcome.explorations[0].complete
    assert outcome.error == ("this process failed: BrokenProcessPool: a worker process died")
