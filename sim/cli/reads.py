"""``turnsim turns`` and ``turnsim history``: the debug API's reads on the command line.

As sqlite-utils mirrors its library, each command is one call of :mod:`sim.api.reads`
(the calls the HTTP endpoints make) over a database opened read-only, never migrated:
``turnsim turns --db X --json`` prints exactly the body of ``GET /api/debug/turns`` with
the same filters, ``turnsim history --db X C --json`` that of
``GET /api/debug/conversations/C``. Without ``--json`` the same values as a table.

Exit codes: 0 done, 2 bad input (a missing or unmigrated database, an unknown
conversation, a bad filter).
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from persisters.errors import TurnsimError
from persisters.model import PHASES, TurnQuery
from persisters.store import TurnStore
from sim.api.params import DEFAULT_LIMIT, LIMIT_MAX, ParameterError, TurnsParams
from sim.cli._common import emit_json, fail
from sim.printable import printable
from sim.scenario.report import console_for

T = TypeVar("T")
SHORT_ID = 8
#: The option each API parameter is given by.
_OPTIONS = {
    "as_of_ms": "as-of-ms",
    "since_ms": "since",
    "runtime_key": "runtime",
    "conv_id": "conv",
}


def _read(db: Path, call: Callable[[TurnStore], Awaitable[T]]) -> T:
    """Open ``db`` as the server does (read-only, never migrated), make one read, close."""
    from sim.api.serve import open_served_store

    async def main() -> T:
        store = await open_served_store(db)
        try:
            return await call(store)
        finally:
            await store.close()

    try:
        return anyio.run(main)
    except TurnsimError as exc:
        fail(str(exc))


def _console() -> Console:
    return console_for(sys.stdout)  # the terminal's width, else 120 columns


def _db_option(fn: Any) -> Any:
    return click.option(
        "--db",
        "db",
        required=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="SQLite database to read (opened read-only; never migrated).",
    )(fn)


@click.command("turns", epilog="Docs: docs/api.md, docs/authoring.md.")
@_db_option
@click.option("--conv", "conv_id", default=None, metavar="ID", help="Only this conversation.")
@click.option("--session", "session_id", default=None, metavar="ID", help="Only this session.")
@click.option("--phase", type=click.Choice(PHASES), default=None, help="Only this phase.")
@click.option("--runtime", "runtime_key", default=None, metavar="KEY", help="Only this runtime.")
@click.option(
    "--inference", "inference_id", default=None, metavar="ID", help="Only this inference."
)
@click.option("--since", "since_ms", type=int, default=None, metavar="MS", help="From this time.")
@click.option(
    "--as-of-ms",
    "as_of_ms",
    type=int,
    default=None,
    metavar="MS",
    help="The store as it was at this time (snapshots saved at or before it).",
)
@click.option(
    "--limit",
    type=int,
    default=DEFAULT_LIMIT,
    show_default=True,
    help=f"Most snapshots shown (newest first; at most {LIMIT_MAX}).",
)
@click.option("--json", "as_json", is_flag=True, help="The API's JSON body ({items: [...]}).")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row (payload included).")
def turns(
    db: Path,
    conv_id: str | None,
    session_id: str | None,
    phase: str | None,
    runtime_key: str | None,
    inference_id: str | None,
    since_ms: int | None,
    as_of_ms: int | None,
    limit: int,
    as_json: bool,
    as_csv: bool,
) -> None:
    """Stored turn snapshots, newest first, each with the runtime stored with it.

    The filters are those of GET /api/debug/turns (docs/api.md), by the same names.
    """
    from sim.api.reads import turn_rows
    from sim.api.views import ITEM_FIELDS, render_items

    if as_json and as_csv:
        fail("choose one of --json and --csv")
    try:
        query: TurnQuery = TurnsParams(
            conv_id=conv_id,
            session_id=session_id,
            phase=phase,
            runtime_key=runtime_key,
            inference_id=inference_id,
            since_ms=since_ms,
            as_of_ms=as_of_ms,
            limit=limit,
        ).to_query()
    except ParameterError as exc:
        fail(f"{exc} (option --{_OPTIONS.get(exc.parameter, exc.parameter)})")
    rows = _read(db, lambda store: turn_rows(store, query))
    if as_json:
        sys.stdout.write(render_items(rows) + "\n")
        return
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(ITEM_FIELDS)
        writer.writerows(row[: len(ITEM_FIELDS)] for row in rows)
        return
    table = Table("conversation", "session", "turn", "phase", "runtime", "inference", "at ms")
    for conv, session, turn, ph, runtime, inference, created, _payload in (row[:8] for row in rows):
        table.add_row(
            *(
                Text(printable(str(x)))
                for x in (
                    conv,
                    session,
                    str(turn)[:SHORT_ID],
                    ph,
                    runtime or "(unknown)",
                    str(inference)[:SHORT_ID],
                    created,
                )
            )
        )
    console = _console()
    console.print(table)
    shown = f"{len(rows)} snapshot{'s' if len(rows) != 1 else ''}"
    more = " (the limit: --limit for more)" if len(rows) == limit else ""
    console.print(f"{shown}{more}; --json for the API's items")


@click.command("history", epilog="Docs: docs/api.md, docs/authoring.md.")
@_db_option
@click.argument("conv_id", metavar="CONV")
@click.option("--json", "as_json", is_flag=True, help="The API's JSON body.")
def history(db: Path, conv_id: str, as_json: bool) -> None:
    """The runtimes a conversation's turns ran on, oldest first, and its current pointer.

    The same as GET /api/debug/conversations/CONV (docs/api.md): the history comes from
    the stored turns, never from the pointer.
    """
    from sim.api.reads import conversation_detail

    body = _read(db, lambda store: conversation_detail(store, conv_id))
    if body is None:
        fail(f"unknown conversation {conv_id!r} in {db} (turnsim turns --db {db} lists turns)")
    if as_json:
        emit_json(body)
        return
    console = _console()
    n = body["turn_count"]
    console.print(
        Text(
            printable(
                f"conversation {body['conv_id']} · session {body['session_id']} · "
                f"{n} turn{'s' if n != 1 else ''}"
            ),
            style="bold",
        )
    )
    pointer = body["current_runtime_key"] or "(none)"
    console.print(Text(printable(f"current runtime (the pointer, not history): {pointer}")))
    if not body["runtime_history"]:
        console.print("no stored turns")
        return
    table = Table(
        "runtime", "turns", "first turn", "last turn", title="runtime history (oldest first)"
    )
    for span in body["runtime_history"]:
        table.add_row(
            Text(printable(span["runtime_key"] or "(unknown)")),
            str(span["turn_count"]),
            Text(printable(span["first_turn_id"][:SHORT_ID])),
            Text(printable(span["last_turn_id"][:SHORT_ID])),
        )
    console.print(table)
