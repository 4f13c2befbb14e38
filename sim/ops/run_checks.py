"""The doctor's ``mixed_runs`` check: turns whose snapshots were saved by more than one run.

Each ``turnsim run --db`` claims its scenario in the file (``scenario_runs``, schema 3)
and writes its own ``run_id`` into every snapshot it saves; two runs of one scenario at
once are refused, but a file written by older code, by hand or by two programs can still
mix them under the same turn ids. Rows written before schema 3 have ``run_id`` '' and are
not counted.
"""

from __future__ import annotations

from typing import Any

from sim.ops.checks import CheckContext, CheckSpec

MIXED_RUNS_SQL = (
    "SELECT conv_id, session_id, turn_id, count(DISTINCT run_id) AS runs,\n"
    "       group_concat(DISTINCT run_id) AS run_ids\n"
    "FROM turn_snapshots\n"
    "WHERE run_id <> ''\n"
    "GROUP BY conv_id, session_id, turn_id\n"
    "HAVING count(DISTINCT run_id) > 1\n"
    "ORDER BY conv_id, session_id, turn_id"
)


def _judge(rows: list[tuple[Any, ...]], ctx: CheckContext) -> tuple[str, str]:
    if not rows:
        return "ok", "every turn's snapshots were saved by one run"
    return "error", (
        f"{len(rows)} turn(s) hold snapshots saved by more than one run (two runs of a "
        "scenario wrote into one file at once, or an older turnsim let them): their phases "
        "may come from different runs; rerun the scenario into a new --db"
    )


MIXED_RUNS = CheckSpec(
    "mixed_runs",
    tuple(f"turn_snapshots.{c}" for c in ("conv_id", "session_id", "turn_id", "run_id")),
    lambda ctx: MIXED_RUNS_SQL,
    _judge,
)
