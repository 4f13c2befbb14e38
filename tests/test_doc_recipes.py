"""Every recipe in the docs runs as written.

A recipe is a fenced block whose info string is ``sh recipe``. The blocks of one Markdown
file run in order, in one fresh folder holding a copy of ``scenarios/`` (so a later block
may read what an earlier one wrote), each command in bash with ``pipefail``: a ``jq`` fed a
line that is not JSON fails the recipe. A command must exit 0 unless its comment says
``# exit N``. Nothing may print a traceback or a "malformed line" warning.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
BLOCK = re.compile(r"^```sh recipe\n(.*?)^```", re.S | re.M)
EXIT = re.compile(r"#.*\bexit (\d+)")


def commands(block: str) -> list[str]:
    """The block's commands: a line continued by ``\\`` or by an open quote joins the next."""
    out: list[str] = []
    current = ""
    for line in block.splitlines():
        current = f"{current}\n{line}" if current else line
        if not current.strip() or current.lstrip().startswith("#"):
            current = ""
            continue
        if current.endswith("\\") or _open_quote(current):
            continue
        out.append(current)
        current = ""
    assert not current, f"unterminated command: {current}"
    return out


def _open_quote(text: str) -> bool:
    quote = ""
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#":
            break  # a comment: its quotes do not count
    return bool(quote)


def recipes(path: Path) -> list[str]:
    return [c for block in BLOCK.findall(path.read_text(encoding="utf-8")) for c in commands(block)]


DOCS_WITH_RECIPES = [p for p in DOCS if recipes(p)]


def test_the_docs_have_recipes() -> None:
    names = {p.name for p in DOCS_WITH_RECIPES}
    assert {"logs.md", "scenarios.md", "authoring.md"} <= names


@pytest.mark.parametrize("doc", DOCS_WITH_RECIPES, ids=lambda p: p.name)
def test_every_recipe_runs(doc: Path, tmp_path: Path) -> None:
    if shutil.which("jq") is None:
        pytest.skip("jq is not installed (apt-get install jq; .ci/run installs it)")
    shutil.copytree(ROOT / "scenarios", tmp_path / "scenarios")
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("COLUMNS", None)
    for command in recipes(doc):
        marked = EXIT.search(command.splitlines()[-1])
        expected = int(marked.group(1)) if marked else 0
        proc = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        shown = f"$ {command}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
        assert proc.returncode == expected, shown
        for output in (proc.stdout, proc.stderr):
            assert "Traceback" not in output, shown
            assert "malformed line" not in output, shown


def test_the_splitter_keeps_quoted_programs_whole() -> None:
    block = "a | jq -c 'x\n  | y' file\n# a comment\nb \\\n  --c  # exit 1\n"
    assert commands(block) == ["a | jq -c 'x\n  | y' file", "b \\\n  --c  # exit 1"]
