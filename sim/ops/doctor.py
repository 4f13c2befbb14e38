"""``turnsim db doctor``: read-only checks of a database file, each with the SQL it ran.

:func:`doctor` opens the file read-only and never writes. Every check records the exact
SQL it ran, so an operator can paste it into ``sqlite3`` and see the same rows.
Severities: ``error`` (the database is not fit to serve: exit 1), ``warning`` (worth a
look, not a failure), ``info`` (facts, e.g. honestly unknown historical rows, or a check
that could not run yet), ``ok``. The checks themselves are :data:`sim.ops.checks.CHECKS`
for turnsim's own layout; :func:`sim.ops.layout_checks.checks_for` gives the real
server's layout its own (the layout is told from the file's tables).
"""

from __future__ import annotations

import os
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import attrs

from persisters.errors import NotSQLiteError
from persisters.normalized_schema import layout_of
from persisters.schema import TURNSIM, table_columns
from persisters.sqlite_database import connect
from persisters.sqlite_file import admit
from sim.ops.checks import SEVERITIES, CheckContext, CheckSpec
from sim.ops.layout_checks import checks_for

#: Most rows of a check's result kept in a :class:`Check` (``row_count`` has them all).
MAX_RESULT_ROWS = 50


@attrs.frozen
class Check:
    """One doctor check: what ran, what it returned, and what that means.

    ``sql`` is exactly the statement that ran (or, when ``ran`` is false, would run once
    the schema allows). ``result`` holds the first :data:`MAX_RESULT_ROWS` rows it
    returned, ``columns`` their names, ``row_count`` how many it returned in all.
    """

    name: str
    severity: str = attrs.field(validator=attrs.validators.in_(SEVERITIES))
    sql: str
    columns: tuple[str, ...]
    result: tuple[tuple[Any, ...], ...]
    row_count: int
    message: str
    ran: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "severity": self.severity,
            "ran": self.ran,
            "sql": self.sql,
            "columns": list(self.columns),
            "rows": [list(r) for r in self.result],
            "row_count": self.row_count,
            "truncated": self.row_count > len(self.result),
            "message": self.message,
        }


@attrs.frozen
class DoctorReport:
    """Every check :func:`doctor` ran on one file, in the order they ran."""

    path: str
    checks: tuple[Check, ...]
    layout: str = TURNSIM.name

    @property
    def healthy(self) -> bool:
        """No check found an error (warnings and info do not make a database unhealthy)."""
        return not any(c.severity == "error" for c in self.checks)

    @property
    def exit_code(self) -> int:
        """0 healthy, 1 errors found (2, unusable file, is raised, never reported)."""
        return 0 if self.healthy else 1

    @property
    def findings(self) -> tuple[Check, ...]:
        """Every check that is not ``ok``, most serious first (then in check order)."""
        rank = {s: i for i, s in enumerate(SEVERITIES)}
        notable = [c for c in self.checks if c.severity != "ok"]
        return tuple(sorted(notable, key=lambda c: rank[c.severity]))

    @property
    def problems(self) -> tuple[Check, ...]:
        """Errors then warnings."""
        return tuple(c for c in self.findings if c.severity in ("error", "warning"))

    def check(self, name: str) -> Check:
        """The check called ``name`` (KeyError when there is none)."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        counts = Counter(c.severity for c in self.checks)
        return {
            "path": self.path,
            "layout": self.layout,
            "healthy": self.healthy,
            "exit_code": self.exit_code,
            "counts": {s: counts.get(s, 0) for s in SEVERITIES},
            "findings": [c.name for c in self.findings],
            "checks": [c.to_json() for c in self.checks],
        }


def _jsonable(value: Any) -> Any:
    return value.hex() if isinstance(value, bytes) else value


def _run(spec: CheckSpec, ctx: CheckContext) -> Check:
    sql = spec.sql(ctx)
    missing = [n for n in spec.needs if not ctx.has(n)]
    if missing:
        return Check(
            spec.name,
            "info",
            sql,
            (),
            (),
            0,
            f"not run: needs {', '.join(missing)}; run `turnsim db migrate {ctx.path}` first",
            ran=False,
        )
    try:
        cursor = ctx.conn.execute(sql)
        columns = tuple(d[0] for d in cursor.description or ())
        rows = [tuple(_jsonable(v) for v in row) for row in cursor]
    except sqlite3.Error as exc:
        return Check(spec.name, "error", sql, (), (), 0, f"the check's SQL failed: {exc}")
    severity, message = spec.judge(rows, ctx)
    return Check(
        spec.name, severity, sql, columns, tuple(rows[:MAX_RESULT_ROWS]), len(rows), message
    )


def doctor(path: str | os.PathLike[str]) -> DoctorReport:
    """Run every check of the file's layout on the file at ``path``, read-only.

    The layout is the one its tables say (:func:`persisters.normalized_schema.layout_of`;
    turnsim's own for a file of neither, whose missing tables the checks then report).

    Never writes to the file (it is opened with ``mode=ro``). Raises
    :class:`sim.errors.NotSQLiteError` when the file is missing, a directory, unreadable or
    not a usable SQLite database; anything else, even a database without turnsim tables
    or with a failing check, is reported in the :class:`DoctorReport`. A check whose
    columns are missing does not run (``ran`` false, severity ``info``); the missing
    columns themselves are the ``required_columns`` error.
    """
    p = Path(path)
    admit(p, "check")
    conn = connect(p, read_only=True)
    try:
        try:
            names = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            ]
            columns = {n: frozenset(table_columns(conn, n)) for n in names}
        except sqlite3.DatabaseError as exc:
            raise NotSQLiteError(f"{p}: not a usable SQLite database ({exc})") from None
        layout = layout_of(frozenset(names)) or TURNSIM
        ctx = CheckContext(conn, os.fspath(p), columns, layout)
        checks = tuple(_run(spec, ctx) for spec in checks_for(layout))
    finally:
        conn.close()
    return DoctorReport(os.fspath(p), checks, layout.name)
