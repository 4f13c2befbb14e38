"""Plug-ins from installed packages: a bug variant (``turnsim.variants``) and a store
(``turnsim.stores``), found through their entry points as pip would install them.

Each test lays out a package and its ``.dist-info`` (with ``entry_points.txt``) in a
temporary folder and runs ``turnsim`` with that folder on ``PYTHONPATH``: the real
discovery path, without installing anything.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"

#: What `turnsim run scenarios/` ends with when every shipped scenario passes.
_SHIPPED = Path(__file__).resolve().parents[2] / "scenarios"
SUITE_PASSED = f"{len(list(_SHIPPED.glob('*.yaml')))} passed, 0 failed"

PLUGIN = """
import attrs

from persisters.pipeline import late_bound_runtime
from sim.runtime.variants import Variant

LATE_AGAIN = Variant(
    "late-runtime-again",
    "a plug-in's own bug: the snapshot hook reads the current runtime",
    lambda parts: attrs.evolve(parts, runtime=late_bound_runtime),
)


def make_journal(on_conflict):
    from tests.outside_store import journal_store

    return journal_store(on_conflict)


BROKEN = "not a variant"
"""


def install(tmp_path: Path, entry_points: str) -> dict[str, str]:
    """An installed-looking package ``turnsim_example``; the environment that finds it."""
    (tmp_path / "turnsim_example.py").write_text(PLUGIN)
    info = tmp_path / "turnsim_example-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: turnsim-example\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}


def turnsim(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sim", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_a_variant_from_an_entry_point_is_listed_and_caught(tmp_path: Path) -> None:
    env = install(
        tmp_path,
        """
        [turnsim.variants]
        late-runtime-again = turnsim_example:LATE_AGAIN
        """,
    )
    listed = turnsim(env, "variants")
    assert listed.returncode == 0, listed.stderr
    assert "late-runtime-again" in listed.stdout
    assert "pointer-as-history" in listed.stdout  # the built-in ones stay
    caught = turnsim(
        env, "run", str(SCENARIOS / "inflight_switch.yaml"), "--variant", "late-runtime-again"
    )
    assert caught.returncode == 1, caught.stdout + caught.stderr
    assert "runtime-bound-at-start" in caught.stdout
    assert "--variant late-runtime-again" in caught.stdout  # the replay names it
    clean = turnsim(env, "run", str(SCENARIOS / "inflight_switch.yaml"))
    assert clean.returncode == 0


def test_a_broken_variant_plug_in_is_named_in_one_line(tmp_path: Path) -> None:
    env = install(
        tmp_path,
        """
        [turnsim.variants]
        broken = turnsim_example:BROKEN
        """,
    )
    result = turnsim(env, "run", str(SCENARIOS / "inflight_switch.yaml"), "--variant", "broken")
    assert result.returncode == 2
    assert "turnsim_example:BROKEN" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_store_from_an_entry_point_runs_the_suite(tmp_path: Path) -> None:
    env = install(
        tmp_path,
        """
        [turnsim.stores]
        journal = turnsim_example:make_journal
        """,
    )
    result = turnsim(env, "run", str(SCENARIOS), "--store", "journal")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert SUITE_PASSED in result.stdout
    unknown = turnsim(env, "run", str(SCENARIOS), "--store", "jornal")
    assert unknown.returncode == 2
    assert "registered name (journal)" in unknown.stderr
