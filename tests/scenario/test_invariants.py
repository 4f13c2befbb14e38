"""The invariant checkers' mutation test: each bug variant is named by its invariant."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from sim.runtime.variants import VARIANTS
from sim.scenario.invariants import INVARIANTS
from sim.scenario.parse import load_scenario
from sim.scenario.runner import run_scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"

#: For every bug variant: a shipped scenario that passes on the default build and the
#: invariant that must name the bug when the variant is re-introduced.
CATCHERS = {
    "late-snapshot-runtime": ("inflight_switch.yaml", "runtime-bound-at-start"),
    "upsert-overwrite": ("second_writer.yaml", "never-rewritten"),
    "default-turn-id": ("inventory_to_planner.yaml", "distinct-turns"),
    "swallow-snapshot-errors": ("permanent_fault.yaml", "nothing-lost"),
    "final-on-success-only": ("real_tool_loop.yaml", "nothing-lost"),
    "pointer-as-history": ("inventory_to_planner.yaml", "pointer-is-current"),
    "restart-id-counter": ("server_restart.yaml", "distinct-turns"),
    "advance-before-durable": ("slow_tool_results.yaml", "durable-before-advance"),
    "unpaired-tool-call": ("crash_mid_tool_round.yaml", "tool-pairing"),
    "no-restart-recovery": ("server_restart.yaml", "no-zombie-inflight"),
    "unlocked-scheduled-events": ("scheduled_reminders.yaml", "single-writer"),
    "timer-batched-snapshots": ("inventory_to_planner.yaml", "terminal-is-last"),
    "stamp-every-block": ("history_attribution.yaml", "block-attribution-stable"),
    "clone-turn-id": ("history_attribution.yaml", "distinct-turns"),
    "live-snapshot-payload": ("async_snapshots.yaml", "phase-snapshot-faithful"),
    "resume-in-place": ("resume_checkpoint.yaml", "never-rewritten"),
    "ignore-history-error": ("history_load_failure.yaml", "history-continuity"),
    "profile-resolved-once": ("inventory_to_planner.yaml", "switch-takes-effect"),
}


def test_every_variant_has_a_catcher() -> None:
    assert set(CATCHERS) == set(VARIANTS)
    assert {inv for _, inv in CATCHERS.values()} <= set(INVARIANTS)


@pytest.mark.parametrize("variant", sorted(CATCHERS))
def test_checkers_catch_each_variant(variant: str) -> None:
    """Mutation test of the checkers: pass on the default build, fail with the variant."""
    file, invariant = CATCHERS[variant]
    scenario = load_scenario(SCENARIOS / file)
    clean = anyio.run(run_scenario, scenario)
    assert clean.passed, clean.describe()
    broken = anyio.run(lambda: run_scenario(scenario, variants=[variant]))
    assert not broken.passed
    named = {f.name for f in broken.failures if f.kind == "invariant"}
    assert invariant in named, broken.describe()
    assert f"--variant {variant}" in broken.replay
