"""Helpers shared by the ``sim.ops`` tests: the sample files, digests, plain queries."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

#: The two files ``turnsim db samples`` writes into a directory.
SAMPLE_FILES = ("turns.db", "timeline3.db")


def copy_samples(source: Path, target: Path) -> None:
    """Copy both sample files from ``source`` into ``target`` (a test that writes)."""
    for name in SAMPLE_FILES:
        shutil.copy(source / name, target / name)


def sha(path: Path) -> str:
    """The file's SHA-256: equal digests mean not one byte changed."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def query(path: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """The rows of one statement, on a connection of its own."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def write_bytes(path: Path, content: bytes) -> Path:
    """Write ``content`` to ``path`` and return it (for parametrized file makers)."""
    path.write_bytes(content)
    return path
