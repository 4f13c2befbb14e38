"""`turnsim explore`: seeds perturb the schedule, failures are grouped and replay exactly.

The default run keeps small seed budgets; ``-m slow`` (``make explore``) runs the long form:
500 seeds of the random-switch scenario on the default build, 200 per bug variant, and
every shipped scenario under 50 seeds. Workers, clusters, shards and the failure database
are in ``tests/cli/test_explore_at_scale.py``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner

from persisters.stores import StoreSpec
from sim.cli.main import cli
from sim.logs.setup import render_json
from sim.runtime.variants import parse_variants
from sim.scenario.actions import Sleep, SwitchProfile
from sim.scenario.batches import Source
from sim.scenario.executors import InProcess
from sim.scenario.exploration import Exploration
from sim.scenario.explore import Settings, Target
from sim.scenario.explore import explore as explore_targets
from sim.scenario.parse import load_scenario, read_scenario_text
from sim.scenario.runner import run_scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"
RANDOM = SCENARIOS / "random_switches.yaml"
TURNSIM = [sys.executable, "-m", "sim"]

#: Seeds the default run explores per variant; the test below proves they suffice.
SMALL = range(0, 8)


def explore(path: Path, seeds: range, variants: tuple[str, ...] = ()) -> Exploration:
    """The library call behind `turnsim explore PATH` (in this process, no shrinking)."""
    target = Target(Source(str(path), read_scenario_text(path)), parse_variants(variants), seeds)
    outcome = explore_targets([target], Settings(shrink=False), InProcess())
    return outcome.explorations[0]


def violations(found: Exploration) -> set[str]:
    """Every failure group any failing seed shows (not only each seed's first)."""
    return {g for f in found.failed for g in {_group(x) for x in f.failures}}


def _group(f: Any) -> str:
    return f.name if f.kind == "invariant" else f"{f.kind}:{f.name}"


# -- the random-switch scenario ---------------------------------------------------------


def test_random_switches_has_only_randomly_timed_switches() -> None:
    scenario = load_scenario(RANDOM)
    switches = [s.step for s in scenario.steps if isinstance(s.step, SwitchProfile)]
    assert switches and all(s.at == "random" for s in switches)
    # no hand-placed mid-flight switch: nothing sleeps to line a switch up with an inference
    assert not any(isinstance(s.step, Sleep) for s in scenario.steps)
    assert any(p.jitter_ms for p in scenario.profiles), "latency jitter must be explored too"


def test_seeds_perturb_the_schedule() -> None:
    """Different seeds give different runs: switch times, jitter and ordering all move."""
    scenario = load_scenario(RANDOM)

    async def timings(seed: int) -> tuple[Any, ...]:
        result = await run_scenario(scenario, seed=seed)
        return tuple(
            (e["event"], e["t_ms"], e.get("turn"), e.get("phase"))
            for e in result.events
            if e["event"] in ("profile.switched", "snapshot.saved", "inference.started")
        )

    runs = {anyio.run(timings, seed) for seed in range(6)}
    assert len(runs) == 6


def test_random_switches_passes_on_the_default_build() -> None:
    found = explore(RANDOM, range(0, 25))
    assert found.passed, [f.to_json() for f in found.failed[:3]]
    assert found.runs == 25 and found.switches == 25 * 3


@pytest.mark.slow
def test_random_switches_passes_500_seeds() -> None:
    found = explore(RANDOM, range(0, 500))
    assert found.passed, [f.to_json() for f in found.failed[:3]]


@pytest.mark.parametrize(
    ("variant", "invariant"),
    [
        ("late-snapshot-runtime", "runtime-bound-at-start"),
        ("upsert-overwrite", "never-rewritten"),
    ],
)
def test_explore_finds_the_variant_on_a_small_budget(variant: str, invariant: str) -> None:
    found = explore(RANDOM, SMALL, (variant,))
    assert invariant in violations(found), sorted(violations(found))
    first = next(f for f in found.failed if invariant in {_group(x) for x in f.failures})
    assert first.replay == (f"turnsim run {RANDOM} --seed {first.seed} --variant {variant}")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("variant", "invariant"),
    [
        ("late-snapshot-runtime", "runtime-bound-at-start"),
        ("upsert-overwrite", "never-rewritten"),
    ],
)
def test_explore_finds_the_variant_within_200_seeds(variant: str, invariant: str) -> None:
    found = explore(RANDOM, range(0, 200), (variant,))
    assert invariant in violations(found)


def test_upsert_overwrite_depends_on_the_seed() -> None:
    """The second writer's resave only rewrites when the switch timing makes it differ."""
    found = explore(RANDOM, SMALL, ("upsert-overwrite",))
    failed = {f.seed for f in found.failed}
    assert failed and failed != set(SMALL)


def test_every_shipped_scenario_passes_under_other_seeds() -> None:
    for path in sorted(SCENARIOS.glob("*.yaml")):
        found = explore(path, range(100, 103))
        assert found.passed, (path.name, [f.to_json() for f in found.failed[:2]])


@pytest.mark.slow
def test_every_shipped_scenario_passes_50_seeds() -> None:
    for path in sorted(SCENARIOS.glob("*.yaml")):
        found = explore(path, range(0, 50))
        assert found.passed, (path.name, [f.to_json() for f in found.failed[:2]])


# -- one seed, one run ------------------------------------------------------------------


def test_one_seed_is_one_run_on_both_backends() -> None:
    scenario = load_scenario(RANDOM)

    async def events(seed: int) -> list[dict[str, Any]]:
        return (await run_scenario(scenario, seed=seed, variants=["upsert-overwrite"])).events

    for seed in range(3):
        asyncio_run = anyio.run(events, seed, backend="asyncio")
        assert anyio.run(events, seed, backend="trio") == asyncio_run
        assert anyio.run(events, seed, backend="asyncio") == asyncio_run


def _expected_log(events: list[dict[str, Any]], scenario: str, seed: int) -> bytes:
    """The JSON log `turnsim run --log-file` writes for these history events."""
    lines = []
    for e in events:
        level = "warning" if e["event"].endswith(("failed", "violated", "swallowed")) else "info"
        fields = {**e, "level": level, "scenario": scenario, "seed": seed}
        lines.append(render_json(None, level, fields))
    return ("\n".join(lines) + "\n").encode()


def test_replay_reproduces_a_failing_seed_byte_for_byte(tmp_path: Path) -> None:
    variant = "late-snapshot-runtime"
    scenario = load_scenario(RANDOM)
    found = explore(RANDOM, SMALL, (variant,))  # on the memory store, re-checked on SQLite
    seed = found.failed[0].seed
    replay = found.failed[0].replay.split()
    assert replay[:3] == ["turnsim", "run", str(RANDOM)]
    # the exploration's own run of that seed (its store), as history events
    explored = anyio.run(
        lambda: run_scenario(scenario, seed=seed, variants=[variant], store=StoreSpec("memory"))
    )
    assert [f.to_json() for f in explored.failures] == [
        f.to_json() for f in found.failed[0].failures
    ]
    logs = []
    for i, backend in enumerate(("asyncio", "asyncio", "trio")):
        log = tmp_path / f"replay{i}.jsonl"
        proc = subprocess.run(
            [*TURNSIM, *replay[1:], "--log-file", str(log), "--backend", backend, "--json"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 1, proc.stderr
        report = json.loads(proc.stdout)
        assert report["scenarios"][0]["failures"] == [f.to_json() for f in explored.failures]
        logs.append(log.read_bytes())
    assert logs[0] == logs[1] == logs[2]
    assert logs[0] == _expected_log(explored.events, scenario.name, seed)


# -- the command ------------------------------------------------------------------------


def invoke(*args: str) -> Any:
    """`turnsim explore ARGS`, remembering no failing seed (each test stands alone)."""
    return CliRunner().invoke(cli, ["explore", "--no-failure-db", *args])


def test_cli_groups_failing_seeds_with_replay_commands(tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = invoke(
        str(RANDOM),
        "--seeds",
        str(len(SMALL)),
        "--variant",
        "late-snapshot-runtime",
        "--out",
        str(out),
        "--show",
        "0",
        "--shrink-runs",
        "40",
        "--jobs",
        "1",
    )
    assert result.exit_code == 1, result.output
    text = result.stdout
    doc = json.loads((out / "report.json").read_text())
    (group,) = doc["scenarios"][0]["groups"]  # one bug, one group: not one per invariant
    assert group["first_violation"] == "runtime-bound-at-start"
    assert "#1 runtime-bound-at-start:" in text and "#2" not in text
    assert group["seeds"] == doc["scenarios"][0]["failed_seeds"]
    for seed in group["seeds"]:
        line = f"turnsim run {RANDOM} --seed {seed} --variant late-snapshot-runtime"
        assert line in text
        assert line in group["replays"]
    example = group["example"]
    assert Path(example["path"]).parent == out  # written next to the report
    assert Path(example["path"]).is_file()
    assert example["replay"] in text
    assert example["size"]["steps"] < example["original_size"]["steps"]
    assert {v["name"] for v in example["violations"]} >= {"runtime-bound-at-start"}
    assert "falsifying example" in text
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["report.json", Path(example["path"]).name]
    )


def test_cli_json_and_exit_codes(tmp_path: Path) -> None:
    passing = invoke(
        str(SCENARIOS / "inventory_to_planner.yaml"),
        "--seeds",
        "3",
        "--json",
        "--out",
        str(tmp_path / "a"),
        "--jobs",
        "1",
    )
    assert passing.exit_code == 0, passing.output
    doc = json.loads(passing.stdout)
    assert doc["passed"] is True
    assert doc["summary"]["runs"] == 3 and doc["summary"]["failed_runs"] == 0
    assert doc["scenarios"][0]["seeds"] == {"first": 0, "last": 2, "count": 3}
    assert doc["report"] == str(tmp_path / "a" / "report.json")

    failing = invoke(
        str(RANDOM),
        "--seeds",
        "2",
        "--start",
        "3",
        "--variant",
        "upsert-overwrite",
        "--json",
        "--no-shrink",
        "--out",
        str(tmp_path / "b"),
    )
    assert failing.exit_code == 1, failing.output
    doc = json.loads(failing.stdout)
    assert doc["passed"] is False
    assert doc["scenarios"][0]["failed_seeds"] == [3, 4]
    assert doc["scenarios"][0]["examples"] == {}
    assert doc["scenarios"][0]["groups"][0]["example"] is None


def test_cli_shows_progress_with_rate_and_eta_on_stderr(tmp_path: Path) -> None:
    result = invoke(
        str(SCENARIOS / "inventory_to_planner.yaml"), "--seeds", "2", "--out", str(tmp_path)
    )
    assert result.exit_code == 0
    assert "2/2" in result.stderr and "inventory-to-planner" in result.stderr
    assert "runs/s" in result.stderr and "ETA" in result.stderr
    quiet = invoke(
        str(SCENARIOS / "inventory_to_planner.yaml"),
        "--seeds",
        "2",
        "--out",
        str(tmp_path),
        "--no-progress",
    )
    assert "2/2" not in quiet.stderr


def test_an_interrupted_exploration_still_reports(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            *TURNSIM,
            "explore",
            str(RANDOM),
            "--seeds",
            "100000",
            "--out",
            str(tmp_path),
            "--json",
            "--no-failure-db",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Ctrl-C once the exploration runs: a start-up under load took over 2 s and the signal
    # arrived before explore's handler (KeyboardInterrupt); 100000 seeds take minutes
    time.sleep(6)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    doc = json.loads(out)
    assert doc["interrupted"] is True
    assert doc["scenarios"][0]["complete"] is False
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["summary"]["runs"] == doc["summary"]["runs"] < 100000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--variant", "no-such-bug"], "unknown variant 'no-such-bug'"),
        (["--seeds", "0"], "--seeds"),
        (["--start", "-1"], "--start"),
        (["--start", str(2**53), "--seeds", "2"], "runs past the largest seed"),
    ],
)
def test_cli_bad_input_exits_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = invoke(str(RANDOM), "--out", str(tmp_path), *args)
    assert result.exit_code == 2
    assert message in result.output + result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_cli_malformed_scenario_exits_2_with_position(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nprofiles: {}\nconversations: {}\nsteps: [}\n")
    result = invoke(str(bad), "--out", str(tmp_path))
    assert result.exit_code == 2
    assert f"{bad}:4:" in result.stderr
