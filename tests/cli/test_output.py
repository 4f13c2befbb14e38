"""What `turnsim run` prints for people and machines: clean streams, widths, escaping."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def turnsim(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return subprocess.run(
        [sys.executable, "-m", "sim", *args],
        cwd=cwd,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_with_the_log_on_stdout_the_report_goes_to_stderr() -> None:
    proc = turnsim("run", "scenarios/tool_rounds.yaml", "--log-file", "-")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[0]["event"] == "scenario.started"
    assert events[-1]["event"] == "scenario.finished"
    assert "tool-rounds" in proc.stderr and "1 passed, 0 failed" in proc.stderr


def test_json_report_and_log_on_stdout_are_refused() -> None:
    proc = turnsim("run", "scenarios/tool_rounds.yaml", "--log-file", "-", "--json")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "--log-file -" in proc.stderr


def test_at_80_columns_every_scenario_name_is_whole() -> None:
    proc = turnsim("run", "scenarios/", "--variant", "late-snapshot-runtime", COLUMNS="80")
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    for path in sorted((ROOT / "scenarios").glob("*.yaml")):
        name = next(
            line.split(":", 1)[1].strip()
            for line in path.read_text().splitlines()
            if line.startswith("name:")
        )
        assert f"│ {name} " in proc.stdout, name
    assert "variant late-snapshot-runtime" in lines[0]


def test_failure_reports_shorten_ids_and_escape_what_the_file_says(tmp_path: Path) -> None:
    text = (ROOT / "scenarios" / "inflight_switch.yaml").read_text()
    text = text.replace("name: inflight-switch", 'name: "evil\\e[2J\\u202eswitch"')
    (tmp_path / "evil.yaml").write_text(text)
    proc = turnsim("run", "evil.yaml", "--variant", "late-snapshot-runtime", cwd=tmp_path)
    assert proc.returncode == 1
    assert "\x1b" not in proc.stdout and "\u202e" not in proc.stdout
    assert "evil\\x1b[2J\\u202eswitch" in proc.stdout
    report = json.loads(
        turnsim(
            "run", "evil.yaml", "--variant", "late-snapshot-runtime", "--json", cwd=tmp_path
        ).stdout
    )
    turn_id = next(f["turn_id"] for f in report["scenarios"][0]["failures"] if f["turn_id"])
    assert len(turn_id) == 36  # JSON stays exact
    assert f"turn {turn_id[:8]} phase" in proc.stdout  # the timeline's short form
    assert f"turn {turn_id} phase" not in proc.stdout
