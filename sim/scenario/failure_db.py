"""The failure database: failing seeds remembered per scenario and variants, replayed first.

As Hypothesis's example database: ``turnsim explore`` records every failing seed it
reports, and the next exploration of the same scenario under the same variants runs those
seeds before any other, so a failure found once is seen again at once (and a fix is
checked against it first); a remembered seed that passes is forgotten.

The database is a folder (by default ``.turnsim/failures`` in the working directory,
which ``.gitignore`` keeps out of commits). One file per seed, named by the seed, under
``<scenario name>/<variants>/`` (``default`` for none), holding the failure's first line
for people: writers never rewrite a shared file, so shards exploring on one machine may
update it at once. A scenario is known by its name (its file may move); unreadable entries
are ignored.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

#: Where ``turnsim explore`` keeps it unless told otherwise (``--failure-db``).
DEFAULT_PATH = os.path.join(".turnsim", "failures")


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", text).strip("-.") or "unnamed"


class FailureDatabase:
    """Remembered failing seeds under ``root`` (created on the first write)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _folder(self, scenario: str, variants: tuple[str, ...]) -> Path:
        return self.root / _safe(scenario) / (_safe("+".join(variants)) if variants else "default")

    def seeds(self, scenario: str, variants: tuple[str, ...]) -> list[int]:
        """The remembered failing seeds of a scenario under these variants, ascending."""
        folder = self._folder(scenario, variants)
        try:
            names = os.listdir(folder)
        except OSError:
            return []
        return sorted(int(n) for n in names if n.isdigit() and len(n) <= 20)

    def save(self, scenario: str, variants: tuple[str, ...], seed: int, note: str) -> None:
        """Remember a failing seed (``note``: its first failure, one line). Raises OSError."""
        folder = self._folder(scenario, variants)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / str(seed)
        tmp = folder / f".{seed}.{os.getpid()}.tmp"
        tmp.write_text(" ".join(note.split()) + "\n", encoding="utf-8")
        os.replace(tmp, path)  # whole or absent, even with two writers

    def delete(self, scenario: str, variants: tuple[str, ...], seed: int) -> None:
        """Forget a seed (it passes now). Raises OSError, but not for a missing entry."""
        (self._folder(scenario, variants) / str(seed)).unlink(missing_ok=True)


__all__ = ["DEFAULT_PATH", "FailureDatabase"]
