"""sim.logs.summary: the counters agree with what the runner reports."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from sim.cli.main import cli
from sim.events import CATALOGUE
from sim.logs.read import read_events
from sim.logs.summary import summarize
from tests.logs.log_fixtures import SCENARIOS


def test_summary_agrees_with_the_runner_report(tmp_path: Path) -> None:
    log = tmp_path / "suite.jsonl"
    args = ["run", str(SCENARIOS), "--variant", "late-snapshot-runtime", "--json"]
    result = CliRunner().invoke(cli, [*args, "--log-file", str(log)])
    assert result.exit_code == 1
    report = json.loads(result.output)
    summary = summarize(read_events(str(log)), CATALOGUE)
    invariants: dict[str, int] = {}
    for r in report["scenarios"]:
        for f in r["failures"]:
            if f["kind"] == "invariant":
                invariants[f["name"]] = invariants.get(f["name"], 0) + 1
    assert dict(summary.violations_by_invariant) == invariants
    assert summary.violation_count > 0
    assert summary.runs == len(list(SCENARIOS.glob("*.yaml")))
    assert summary.failed_runs == report["summary"]["failed"] > 0
    assert sum(c.turns for c in summary.runtimes.values()) == report["summary"]["turns"]
    assert sum(c.switches for c in summary.conversations.values()) == report["summary"]["switches"]
    assert summary.unknown_events == {}
    odd = summarize([{"event": "made.up"}, {"event": "scenario.started"}], CATALOGUE)
    assert dict(odd.unknown_events) == {"made.up": 1}
