"""A run's claim on its scenario in a database file (schema 3, table ``scenario_runs``).

:func:`claim_scenario` runs inside one write transaction of the store's writer (``BEGIN
IMMEDIATE``): the check that no run claimed the scenario and that the file holds none of
its conversations, and the claim itself, are one atomic step, so of two runs of one
scenario started on one file at once exactly one goes on.
"""

from __future__ import annotations

import sqlite3

from persisters.errors import PermanentStoreError


def claim_scenario(
    conn: sqlite3.Connection, path: str, index: str | None, scenario: str, run_id: str
) -> None:
    """Claim ``scenario`` for ``run_id``; :class:`PermanentStoreError` when it is taken.

    ``index`` is the conversation table (None: the store has none). A file without
    ``scenario_runs`` (another layout) keeps no claims: only its conversations are checked.
    """
    prefix = f"{scenario}."
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    held = None
    if "scenario_runs" in tables:
        held = conn.execute(
            "SELECT run_id FROM scenario_runs WHERE scenario = ?", (scenario,)
        ).fetchone()
    taken: list[str] = []
    if index is not None:
        try:
            taken = [
                r[0]
                for r in conn.execute(
                    f"SELECT conv_id FROM {index} WHERE substr(conv_id, 1, ?) = ? "
                    "ORDER BY conv_id LIMIT 3",
                    (len(prefix), prefix),
                )
            ]
        except sqlite3.OperationalError:  # no such table: nothing of the scenario there
            taken = []
    if held is not None or taken:
        what = f"run {held[0]}" if held is not None else ", ".join(taken)
        raise PermanentStoreError(
            f"{path} already holds conversations of scenario {scenario!r} (claimed by "
            f"{what}); use a new --db or delete it"
        )
    if "scenario_runs" in tables:
        conn.execute(
            "INSERT INTO scenario_runs (scenario, run_id) VALUES (?, ?)", (scenario, run_id)
        )
