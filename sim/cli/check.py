"""``turnsim check LOG|DB...``: verify the invariants on evidence, with no re-run."""

from __future__ import annotations

from pathlib import Path

import click

from sim.cli._common import emit_json, fail
from sim.printable import printable

_SQLITE_HEADER = b"SQLite format 3\x00"
_SERVER_SCHEMES = ("postgresql://", "postgres://", "mysql://", "mariadb://")


def _is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(16) == _SQLITE_HEADER
    except OSError:
        return False


@click.command("check", epilog="Docs: docs/check.md.")
@click.argument("sources", nargs=-1, required=True, metavar="LOG|DB...")
@click.option(
    "--new-since-ms",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    metavar="MS",
    help="Databases: turns created before this time are historical (an empty runtime "
    "there is unknown history, not a violation).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document: a report per source.")
def check(sources: tuple[str, ...], new_since_ms: int, as_json: bool) -> None:
    """Check the invariants on a JSON log or a database, with no re-run.

    A JSON log (`turnsim run --log-file`): every invariant, on every run it holds. A
    database (a SQLite file of turnsim's or the real server's layout, or a server DSN):
    the invariants its final state can prove; the rest are listed as not judged, with why.
    Each violation names the minimal evidence: seq numbers of log events, primary keys of
    rows. Exit 0: nothing found; 1: violations; 2: unusable input.
    """
    from sim.check.db_check import check_server, check_sqlite
    from sim.check.log_check import check_log
    from sim.check.report import CheckInputError

    reports = []
    for source in sources:
        try:
            if source.startswith(_SERVER_SCHEMES):
                reports.append(check_server(source, new_since_ms=new_since_ms))
            elif _is_sqlite(Path(source)):
                reports.append(check_sqlite(source, new_since_ms=new_since_ms))
            else:
                reports.append(check_log(source))
        except CheckInputError as exc:
            fail(str(exc), command="check", as_json=as_json)
    code = max(r.exit_code for r in reports)
    if as_json:
        emit_json({"ok": code == 0, "reports": [r.to_json() for r in reports]})
        raise SystemExit(code)
    for report in reports:
        runs = f", {report.runs} run(s)" if report.kind == "log" else ""
        verdict = "ok" if report.ok else f"{len(report.findings)} violation(s)"
        click.echo(printable(f"{report.source} ({report.kind}{runs}): {verdict}"))
        click.echo(f"  judged: {', '.join(report.judged)}")
        for f in report.findings:
            run = f"[{f.run}] " if f.run else ""
            click.echo(printable(f"  VIOLATION {f.invariant}: {run}{f.message}"))
            click.echo(printable(f"    evidence: {'; '.join(f.evidence)}"))
        for n in report.not_judged:
            click.echo(printable(f"  not judged {n.invariant}: {n.why}"))
    raise SystemExit(code)
