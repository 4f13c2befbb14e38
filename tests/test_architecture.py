"""The architecture, tested: the import-linter contracts hold, and no module grows past
one concept's size without a stated reason (docs/architecture.md draws the layers)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Lines past which a module is probably mixing concerns.
MAX_LINES = 600
#: Modules allowed past MAX_LINES, each because it is one concept (say which).
ONE_CONCEPT: dict[str, str] = {}


def _lint_imports() -> str:
    found = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("lint-imports is not installed: `pip install -e '.[test]'` brings it")
    return found


def test_the_import_contracts_hold() -> None:
    """Layers, independence, no cycles, third-party confinement (pyproject.toml)."""
    result = subprocess.run(
        [_lint_imports(), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " BROKEN" not in result.stdout
    assert result.stdout.count(" KEPT") >= 8  # every contract ran


def test_no_module_mixes_concerns_by_size() -> None:
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines())
        for package in ("sim", "persisters")
        for path in (ROOT / package).rglob("*.py")
    }
    too_big = {p: n for p, n in sizes.items() if n > MAX_LINES and p not in ONE_CONCEPT}
    assert not too_big, f"split these along their seams (or say why in ONE_CONCEPT): {too_big}"
    stale = set(ONE_CONCEPT) - {p for p, n in sizes.items() if n > MAX_LINES}
    assert not stale, f"no longer large, drop from ONE_CONCEPT: {sorted(stale)}"
