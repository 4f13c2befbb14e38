"""``turnsim serve``: the debug HTTP API over a database file (thin over :mod:`sim.api.serve`)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import anyio
import click

from persisters.errors import TurnsimError
from sim.api.serve import DEFAULT_HOST, DEFAULT_PORT, serve_database, until_signalled
from sim.logs.setup import LEVELS, configure_logging
from sim.printable import printable


@click.command()
@click.option(
    "--db",
    "db_path",
    required=True,
    metavar="FILE|DSN",
    help=(
        "SQLite file, or postgresql://HOST/DB?schema=NAME / mysql://USER@HOST/DB, to serve "
        "(read-only; never migrated)."
    ),
)
@click.option(
    "--timeline",
    "timeline_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The real layout's timeline database (timeline_conversations), for the "
    "conversations of a --db of that layout.",
)
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to bind.")
@click.option(
    "--port",
    default=DEFAULT_PORT,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to bind (0: any free port).",
)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="NAME",
    help="Also answer requests whose Host header names NAME (repeatable; '*': any). By "
    "default only the bound names are answered (localhost, 127.0.0.1, [::1] on loopback), "
    "against DNS rebinding.",
)
@click.option(
    "--log-format",
    type=click.Choice(["console", "json"]),
    default="console",
    show_default=True,
    help="How request logs are written to stderr.",
)
@click.option(
    "--log-level",
    type=click.Choice(LEVELS),
    default="info",
    show_default=True,
    help="Lowest level.",
)
def serve(
    db_path: str,
    timeline_path: Path | None,
    host: str,
    port: int,
    allow_hosts: tuple[str, ...],
    log_format: str,
    log_level: str,
) -> None:
    """Serve the debug HTTP API (/api/debug/...) over a database until interrupted.

    The banner's URL is the web UI: conversations, each one's runtime history, each turn's
    phases, and Swagger UI at /api/debug/docs (all offline, read-only).

    Exit codes: 0 stopped by Ctrl-C or SIGTERM (gracefully), 2 the database or address
    cannot be served (one line on stderr: missing, not SQLite, needs `turnsim db migrate`).
    """
    configure_logging(fmt=log_format, level=log_level)

    shown = db_path
    if "://" in db_path:
        from persisters.stores import StoreSpec, StoreSpecError

        try:
            shown = StoreSpec.parse(db_path).label
        except StoreSpecError as exc:
            click.echo(f"turnsim serve: {exc}", err=True)
            raise SystemExit(2) from None

    def announce(url: str) -> None:
        click.echo(printable(f"serving {shown} at {url}/api/debug/ (Ctrl-C to stop)"), err=True)

    serving = partial(
        serve_database,
        db_path,
        host=host,
        port=port,
        ready=announce,
        timeline_path=timeline_path,
        allow_hosts=allow_hosts,
    )
    try:
        anyio.run(until_signalled, serving)
    except TurnsimError as exc:
        # Not _common.fail: it cannot print this line (docs/api.md shows it) without "error: ".
        click.echo(printable(f"turnsim serve: {exc}"), err=True)
        raise SystemExit(2) from None
    click.echo("stopped", err=True)
