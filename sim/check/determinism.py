"""``turnsim run --check-determinism``: one seed, one log, whatever the process or backend.

The scenarios run three times, each in a fresh ``python -m sim run`` process writing its
log: under one ``PYTHONHASHSEED`` on asyncio (the reference), under another
``PYTHONHASHSEED`` (iteration over a set or hash order that reaches the log shows up), and
on trio (the event loop's own scheduling leaking into the run shows up). Each other log is
compared with the reference run by run, event by event, minus wall-clock fields; the first
event that differs is reported for both sides, with the step that was running (the last
``step.started`` before it) and the scenario file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from sim.check.log_check import split_runs
from sim.logs.read import read_events

#: Fields that hold wall-clock time; every other field must be equal between runs.
WALL_CLOCK_FIELDS: frozenset[str] = frozenset({"timestamp", "wall_s", "duration_ms"})


class DeterminismError(RuntimeError):
    """A run could not be made at all (the command failed before writing its log)."""


@attrs.frozen
class Config:
    """How one of the runs is made."""

    hash_seed: str
    backend: str

    @property
    def label(self) -> str:
        return f"PYTHONHASHSEED={self.hash_seed} {self.backend}"


#: The reference first, then one change each.
CONFIGS: tuple[Config, ...] = (Config("1", "asyncio"), Config("2", "asyncio"), Config("1", "trio"))


@attrs.frozen
class Divergence:
    """The first event where one run's log parts from the reference's."""

    scenario: str
    path: str
    reference: str
    other: str
    index: int  # 1-based position of the event in the run
    step: dict[str, Any] | None  # the step.started event before it (None: before any step)
    left: dict[str, Any] | None  # the reference's event (None: its run ended)
    right: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class DeterminismReport:
    configs: tuple[str, ...]
    runs: int  # scenario runs compared per configuration
    divergences: tuple[Divergence, ...]

    @property
    def ok(self) -> bool:
        return not self.divergences

    def to_json(self) -> dict[str, Any]:
        return {
            "deterministic": self.ok,
            "configs": list(self.configs),
            "runs": self.runs,
            "divergences": [d.to_json() for d in self.divergences],
        }


def _comparable(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in WALL_CLOCK_FIELDS}


def run_logged(paths: Sequence[str], args: Sequence[str], config: Config, log: Path) -> None:
    """``python -m sim run PATHS ARGS`` under ``config``, its log written to ``log``."""
    env = dict(os.environ, PYTHONHASHSEED=config.hash_seed)
    command = [sys.executable, "-m", "sim", "run", *paths, *args]
    command += ["--backend", config.backend, "--log-file", str(log)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1) or not log.exists():
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise DeterminismError(f"the run under {config.label} failed: {last}")


def first_divergence(
    reference: list[dict[str, Any]], other: list[dict[str, Any]], labels: tuple[str, str]
) -> Divergence | None:
    """Where one run's events first differ from the reference run's (None: nowhere)."""
    step = None
    for i in range(max(len(reference), len(other))):
        left = reference[i] if i < len(reference) else None
        right = other[i] if i < len(other) else None
        if left is None or right is None or _comparable(left) != _comparable(right):
            start = reference[0] if reference else {}
            return Divergence(
                str(start.get("scenario", "")),
                str(start.get("path", "")),
                labels[0],
                labels[1],
                i + 1,
                step,
                left,
                right,
            )
        if left.get("event") == "step.started":
            step = left
    return None


def compare_logs(
    reference: list[dict[str, Any]], other: list[dict[str, Any]], labels: tuple[str, str]
) -> list[Divergence]:
    """The first divergence of each run of two logs of the same scenarios."""
    out = []
    mine, theirs = split_runs(reference), split_runs(other)
    for i in range(max(len(mine), len(theirs))):
        found = first_divergence(
            mine[i] if i < len(mine) else [], theirs[i] if i < len(theirs) else [], labels
        )
        if found is not None:
            out.append(found)
    return out


def check_determinism(
    paths: Sequence[str], args: Sequence[str] = (), configs: Sequence[Config] = CONFIGS
) -> DeterminismReport:
    """Run ``paths`` (with ``turnsim run`` options ``args``) under each of ``configs`` and
    compare every log with the first one's."""
    with tempfile.TemporaryDirectory(prefix="turnsim-determinism-") as tmp:
        logs = []
        for n, config in enumerate(configs):
            log = Path(tmp) / f"run{n}.jsonl"
            run_logged(paths, args, config, log)
            logs.append(read_events(str(log)))
    divergences: list[Divergence] = []
    for config, events in zip(configs[1:], logs[1:], strict=True):
        divergences += compare_logs(logs[0], events, (configs[0].label, config.label))
    return DeterminismReport(
        tuple(c.label for c in configs), len(split_runs(logs[0])), tuple(divergences)
    )
