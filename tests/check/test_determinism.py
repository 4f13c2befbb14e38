"""``turnsim run --check-determinism`` catches a nondeterminism injected into the simulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.check.determinism import CONFIGS, DeterminismReport, check_determinism, compare_logs
from sim.cli.determinism import print_report

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"

#: Loaded by every Python process started with its folder on PYTHONPATH: when asked, the
#: director opens a scenario's conversations in the iteration order of a set of their
#: names, i.e. in hash order, which PYTHONHASHSEED changes (the leak the check exists for).
SITECUSTOMIZE = """
import os

if os.environ.get("TURNSIM_TEST_SET_ORDER"):
    import attrs

    from sim.scenario import director

    original = director.Director.run

    async def run(self):
        names = list({spec.name for spec in self.scenario.conversations})
        specs = sorted(self.scenario.conversations, key=lambda s: names.index(s.name))
        self.scenario = attrs.evolve(self.scenario, conversations=tuple(specs))
        return await original(self)

    director.Director.run = run
"""


@pytest.fixture
def leaky(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))


def test_set_order_reaching_the_log_is_caught(leaky: None, monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = str(SCENARIOS / "many_conversations.yaml")
    monkeypatch.setenv("TURNSIM_TEST_SET_ORDER", "1")
    # (the CLI's own three runs are the docs' recipe: docs/check.md)
    report = check_determinism([scenario], configs=CONFIGS[:2]).to_json()
    assert not report["deterministic"]
    (divergence,) = report["divergences"]
    assert divergence["other"] == "PYTHONHASHSEED=2 asyncio"
    assert divergence["left"]["event"] == divergence["right"]["event"] == "conversation.started"
    assert divergence["left"]["conv_id"] != divergence["right"]["conv_id"]
    assert divergence["step"]["event"] == "step.started"  # the step that was running
    monkeypatch.delenv("TURNSIM_TEST_SET_ORDER")  # the same hook, switched off: deterministic
    assert check_determinism([scenario], configs=CONFIGS[:2]).ok


def test_the_first_divergence_names_the_step_running() -> None:
    base = [
        {"event": "scenario.started", "scenario": "s", "path": "s.yaml", "seq": 1},
        {"event": "step.started", "step": 2, "kind": "send", "line": 9, "seq": 2},
        {"event": "snapshot.saved", "runtime_key": "a@v1", "seq": 3, "duration_ms": 5},
    ]
    same = [dict(e) for e in base]
    same[2]["duration_ms"] = 7  # wall clock: ignored
    assert compare_logs(base, same, ("a", "b")) == []
    other = [*same[:2], {**same[2], "runtime_key": "b@v1"}]
    (found,) = compare_logs(base, other, ("a", "b"))
    assert (found.index, found.step["step"], found.right["runtime_key"]) == (3, 2, "b@v1")
    (cut,) = compare_logs(base, base[:2], ("a", "b"))
    assert cut.right is None and cut.index == 3


def test_a_divergence_prints_side_by_side(capsys: pytest.CaptureFixture[str]) -> None:
    base = [
        {"event": "scenario.started", "scenario": "s", "path": "s.yaml", "seq": 1},
        {"event": "step.started", "step": 2, "kind": "send", "line": 9, "seq": 2},
        {"event": "snapshot.saved", "runtime_key": "a@v1", "seq": 3},
    ]
    other = [*base[:2], {**base[2], "runtime_key": "b@v1"}]
    found = compare_logs(base, other, ("PYTHONHASHSEED=1 asyncio", "PYTHONHASHSEED=2 asyncio"))
    assert print_report(DeterminismReport(("x", "y"), 1, tuple(found))) == 1
    out = capsys.readouterr().out
    assert "DIVERGED s: event 3, during step 2 (send) at s.yaml:9" in out
    assert "* runtime_key" in out and "a@v1" in out and "b@v1" in out
    assert "  event" in out  # an equal field: no mark
