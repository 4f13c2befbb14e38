"""Rule 7: one semantics, no environment toggles between old and new behaviour.

The package's sources (``sim/``, ``persisters/``) must not read the environment at all:
no ``os.environ`` / ``os.getenv`` (however imported or aliased), no click option fed by
an environment variable (``envvar=``, ``auto_envvar_prefix=``), no dotenv loader. A read
that provably cannot switch semantics (say, a log colour) goes on :data:`ALLOWED` with the
reason, reviewed like code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sim", "persisters")

#: (path relative to the repository, the flagged expression as ``ast.unparse`` prints it)
#: -> why it cannot switch between old and new semantics.
ALLOWED: dict[tuple[str, str], str] = {
    ("sim/cli/logs.py", "os.environ.get('FORCE_COLOR')"): "terminal colour of log output only",
    ("sim/cli/logs.py", "os.environ.get('NO_COLOR')"): "terminal colour of log output only",
    ("sim/cli/logs.py", "os.environ.get('TERM')"): "terminal colour of log output only",
    (
        "sim/scenario/report.py",
        "os.environ.get('COLUMNS', '').isdigit()",
    ): "width of the printed run table only",
    ("sim/check/determinism.py", "os.environ"): (
        "passed on to the determinism check's child runs (with PYTHONHASHSEED set); read for "
        "nothing"
    ),
}

_ENV_NAMES = frozenset({"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"})
_ENV_KEYWORDS = frozenset({"envvar", "auto_envvar_prefix"})
_ENV_MODULES = frozenset({"dotenv", "environs", "decouple"})


def _imports_env(node: ast.Import | ast.ImportFrom) -> bool:
    if isinstance(node, ast.ImportFrom):
        if (node.module or "").split(".")[0] in _ENV_MODULES:
            return True
        return node.module == "os" and any(a.name in _ENV_NAMES for a in node.names)
    return any(a.name.split(".")[0] in _ENV_MODULES for a in node.names)


def env_reads(source: str) -> list[tuple[int, str]]:
    """Every place in ``source`` that reads (or could read) the process environment."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def whole(node: ast.AST) -> str:
        # os.environ -> os.environ.get('X'): the allow-list names the exact variable read
        while isinstance(parent := parents.get(node), ast.Attribute | ast.Call | ast.Subscript):
            if (
                getattr(parent, "value", None) is not node
                and getattr(parent, "func", None) is not node
            ):
                break
            node = parent
        return ast.unparse(node)

    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        hit: str | None = None
        if (isinstance(node, ast.Attribute) and node.attr in _ENV_NAMES) or (
            isinstance(node, ast.Name) and node.id in _ENV_NAMES
        ):
            hit = whole(node)
        elif isinstance(node, ast.Import | ast.ImportFrom) and _imports_env(node):
            hit = ast.unparse(node)
        elif isinstance(node, ast.keyword) and node.arg in _ENV_KEYWORDS:
            hit = f"{node.arg}={ast.unparse(node.value)}"
        elif isinstance(node, ast.Constant) and node.value in _ENV_NAMES:
            hit = repr(node.value)  # getattr(os, "environ")
        if hit is not None:
            found.append((getattr(node, "lineno", 0), hit))
    return found


def violations(root: Path) -> list[str]:
    """``path:line: expression`` for every environment read under ``root``'s packages."""
    out = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            for line, expression in env_reads(path.read_text(encoding="utf-8")):
                if (relative, expression) not in ALLOWED:
                    out.append(f"{relative}:{line}: {expression}")
    return out


def test_the_package_reads_no_environment_variable() -> None:
    assert all((ROOT / p).is_dir() for p in PACKAGES)
    found = violations(ROOT)
    assert not found, (
        "environment reads could switch between old and new semantics (rule 7, no "
        "compatibility flags); remove them, or justify one in ALLOWED:\n" + "\n".join(found)
    )


def test_every_allowed_read_still_exists() -> None:
    for (relative, expression), reason in ALLOWED.items():
        assert reason.strip(), f"{relative}: {expression} needs a reason"
        reads = env_reads((ROOT / relative).read_text(encoding="utf-8"))
        assert expression in {e for _, e in reads}, f"stale ALLOWED entry {relative}: {expression}"


@pytest.mark.parametrize(
    "source",
    [
        'import os\nLEGACY = os.environ.get("TURNSIM_LEGACY_RUNTIME") == "1"\n',
        'import os\nLEGACY = os.getenv("TURNSIM_POINTER_AS_HISTORY")\n',
        'import os as o\nLEGACY = "X" in o.environ\n',
        'from os import environ\nLEGACY = environ["X"]\n',
        'from os import getenv as g\nLEGACY = g("X")\n',
        'import os\nLEGACY = getattr(os, "environ").get("X")\n',
        'import click\n@click.option("--legacy", envvar="TURNSIM_LEGACY")\ndef f(legacy): ...\n',
        'from sim.cli.main import cli\ncli(auto_envvar_prefix="TURNSIM")\n',
        "from dotenv import load_dotenv\nload_dotenv()\n",
    ],
    ids=[
        "environ.get",
        "getenv",
        "aliased-os",
        "from-os-import",
        "aliased-getenv",
        "getattr",
        "click-envvar",
        "click-prefix",
        "dotenv",
    ],
)
def test_the_scan_catches_each_way_of_reading_the_environment(source: str) -> None:
    assert env_reads(source)


def test_the_scan_does_not_flag_prose_or_unrelated_names() -> None:
    clean = (
        '"""The pipeline environment: where persisters run (not os.environ)."""\n'
        "environment = {'runtime': 'inventory@v1'}\n"
        "def env(x): return x\n"
    )
    assert env_reads(clean) == []


def test_the_test_fails_on_a_planted_flag(tmp_path: Path) -> None:
    """The same walk as the real test, over a copy of the tree with one flag planted."""
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text('"""clean"""\n')
    assert violations(tmp_path) == []
    planted = tmp_path / "persisters" / "legacy.py"
    planted.write_text('import os\nPOINTER_IS_HISTORY = os.getenv("TURNSIM_OLD") == "1"\n')
    assert violations(tmp_path) == ["persisters/legacy.py:2: os.getenv('TURNSIM_OLD')"]
