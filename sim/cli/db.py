"""``turnsim db migrate|doctor|samples``: thin layers over :mod:`sim.ops`.

``turnsim db X`` is :mod:`sim.ops.X`: each command is one library call plus its output
(the human rendering, rich tables, stays here). Each command takes ``--json``. A refused
or failed command prints one line on stderr (and, with ``--json``, ``{"error": ...}`` on
stdout) and exits 2, never a traceback.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

import anyio
import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from persisters.errors import TurnsimError
from persisters.migration import MigrationReport
from sim.cli._common import emit_json, fail
from sim.ops.doctor import Check, DoctorReport, doctor
from sim.ops.files import mib
from sim.ops.migrate import Migration, migrate
from sim.ops.real_samples import make_real_samples
from sim.ops.samples import (
    DEFAULT_CONVERSATIONS,
    DEFAULT_SEED,
    DEFAULT_TURNS,
    SampleStats,
    TimelineStats,
    make_samples,
)

#: Rows of a check's result shown in human output (``--json`` carries more).
SHOWN_ROWS = 10
_LABELS = {"error": "ERROR", "warning": "WARN", "info": "INFO", "ok": "OK"}
_STYLES = {"error": "bold red", "warning": "yellow", "info": "cyan", "ok": "green"}


def _console(err: bool = False) -> Console:
    # soft_wrap: lines stay whole and greppable; markup off: paths and SQL print as they are
    return Console(stderr=err, highlight=False, soft_wrap=True, markup=False)


def _guarded(command: str, as_json: bool, fn: Callable[[], Any]) -> Any:
    """``fn()``; a refusal or failure becomes :func:`sim.cli._common.fail` (exit 2)."""
    try:
        return fn()
    except (TurnsimError, OSError) as exc:
        fail(str(exc), command=f"db {command}", as_json=as_json)


@click.group()
def db() -> None:
    """Operate databases: migrate old ones, check them, make old samples."""


# ---------------------------------------------------------------------------------------
# migrate


def _print_space(out: Console, result: Migration) -> None:
    path, space, compaction = result.path, result.space, result.compaction
    if compaction is not None:
        before, after = compaction.before, compaction.after
        out.print(
            f"compacted (VACUUM): {mib(before.database_bytes)} -> {mib(after.database_bytes)}, "
            f"{mib(before.free_bytes)} of free pages returned to the disk."
        )
    elif space.worth_compacting:
        out.print(
            f"{path} keeps {mib(space.free_bytes)} of free pages ({space.free_share:.0%} of the "
            "database; e.g. the old pages of a table the migration rebuilt). Later writes reuse "
            "them; to "
            f"return them to the disk: turnsim db migrate {path} --vacuum (needs about "
            f"{mib(space.database_bytes)} of free disk while it runs)."
        )


def _print_projection(out: Console, report: MigrationReport) -> None:
    table = Table(title="runtime_key / inference_id per row", title_justify="left")
    table.add_column("column")
    table.add_column("backfilled" if not report.dry_run else "would backfill", justify="right")
    table.add_column("left unknown ('')", justify="right")
    for key in report.unknown:
        table.add_row(key, str(report.backfilled.get(key, 0)), str(report.unknown[key]))
    out.print(table)
    malformed = ", ".join(f"{t} {n}" for t, n in report.malformed.items())
    out.print(f"malformed metadata rows (nothing to backfill from): {malformed or '-'}")
    if any(report.unknown.values()):
        out.print(
            "Rows left unknown stay '': their metadata names no runtime. Never fill them from "
            "the conversation pointer (docs/migration-playbook.md, troubleshooting)."
        )


def _print_migration(result: Migration) -> None:
    out = _console()
    path, report, backup = result.path, result.report, result.backup
    before, after = report.schema_version_before, report.schema_version_after
    if report.layout == "timeline":
        out.print(f"{path}: a timeline database of the real server's layout.")
    elif report.layout != "turnsim":
        out.print(f"{path}: a turn database of the real server's normalized layout.")
    if not report.changed:
        out.print(f"{path}: nothing to do, schema version {after} is current.")
    elif report.dry_run:
        out.print(
            f"{path}: dry run, nothing was written. Migrating would take schema version "
            f"{before} -> {after}:"
        )
    else:
        out.print(f"{path}: migrated schema version {before} -> {after}.")
    if report.changed:
        facts = []
        if not report.dry_run:
            facts.append(("backup", os.fspath(backup) if backup else "none (--no-backup)"))
        rebuilt = ", ".join(report.tables_rebuilt)
        facts += [
            ("tables created", ", ".join(report.tables_created) or "-"),
            ("tables rebuilt", f"{rebuilt} (append-only snapshot ids)" if rebuilt else "-"),
            ("columns renamed", ", ".join(report.columns_renamed) or "-"),
            ("columns added", ", ".join(report.columns_added) or "-"),
            ("indexes added", ", ".join(report.indexes_added) or "-"),
        ]
        if report.layout == "turnsim":
            facts.append(("triggers added", ", ".join(report.triggers_added) or "-"))
        if "turns.runtime_key" in report.unknown:  # the file has turns (not a timeline)
            facts.append(("updated_at_ms", f"filled in {report.updated_at_filled} turns rows"))
        if report.layout != "turnsim" and "turn_snapshots.runtime_key" in report.unknown:
            facts.append(
                (
                    "snapshots",
                    f"{report.snapshots_imported} copied from turn_block_membership into "
                    "the snapshot log (payload rebuilt from the blocks)",
                )
            )
        for name, value in facts:
            out.print(f"  {name:<16} {value}", markup=False)
    if report.unknown:  # else a timeline database: no turns, nothing projected
        _print_projection(out, report)
    if not report.dry_run:
        _print_space(out, result)
    if report.changed and not report.dry_run:
        out.print(f"Next: turnsim db doctor {path}")


@db.command(name="migrate")
@click.argument("file", type=click.Path(dir_okay=True, path_type=str))
@click.option("--dry-run", is_flag=True, help="Run the migration and roll it back; write nothing.")
@click.option(
    "--backup/--no-backup",
    default=True,
    show_default=True,
    help="Copy FILE to FILE.bak-v<old version> first (never overwriting an existing backup).",
)
@click.option(
    "--vacuum",
    is_flag=True,
    help="Afterwards, rewrite FILE without its free pages (SQLite VACUUM; also when there "
    "is nothing to migrate). Needs free disk of about FILE's size.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def migrate_command(file: str, dry_run: bool, backup: bool, vacuum: bool, as_json: bool) -> None:
    """Migrate an old database FILE in place, in one transaction.

    Adds the missing tables, columns and indexes, renames the conversation pointer
    column, backfills runtime_key / inference_id from each row's own metadata and leaves
    '' where the metadata names none. Running it again reports nothing to do.
    The rebuilt snapshot table's old pages stay in FILE as free pages; the report says
    how much, and --vacuum returns them to the disk.
    Exit 0 on success (also when there is nothing to do), 2 when refused or failed.
    """
    if dry_run and vacuum:
        fail(
            "--vacuum rewrites the file, --dry-run writes nothing: pick one",
            command="db migrate",
            as_json=as_json,
        )
    doing = f"migrating {file}" + (" and compacting it (VACUUM)" if vacuum else "") + " ..."
    with contextlib.nullcontext() if as_json else _console(err=True).status(doing):
        result: Migration = _guarded(
            "migrate",
            as_json,
            lambda: migrate(file, dry_run=dry_run, backup=backup, vacuum=vacuum),
        )
    if as_json:
        emit_json(result.to_json(), pretty=True)
    else:
        _print_migration(result)
    if result.vacuum_error:  # the report above stands; only the compaction failed
        fail(result.vacuum_error, command="db migrate")


# ---------------------------------------------------------------------------------------
# doctor


def _cell(value: Any) -> str:
    text = "NULL" if value is None else str(value)
    return " ".join(text.split())


def _print_result(out: Console, check: Check) -> None:
    """The rows as sqlite3 prints them with ``.headers on`` (list mode: ``a|b|c``)."""
    if len(check.columns) == 1 and check.row_count == 1:
        out.print(_cell(check.result[0][0]), soft_wrap=True, markup=False, highlight=False)
        return
    if not check.result:
        out.print("(no rows)", style="dim")
        return
    lines = ["|".join(check.columns)]
    lines += ["|".join(_cell(v) for v in row) for row in check.result[:SHOWN_ROWS]]
    out.print("\n".join(lines), soft_wrap=True, markup=False, highlight=False)
    if check.row_count > SHOWN_ROWS:
        out.print(
            f"... {check.row_count - SHOWN_ROWS} more row(s): run the SQL for all", style="dim"
        )


def _print_doctor(report: DoctorReport) -> None:
    out = _console()
    out.print(f"turnsim db doctor {report.path}", style="bold")
    if report.layout != "turnsim":
        out.print(f"layout: {report.layout} (the real server's)")
    for check in report.checks:
        out.print()
        label = "SKIP" if not check.ran else _LABELS[check.severity]
        head = Text()
        head.append(f"[{label}]", style=_STYLES[check.severity])
        head.append(f" {check.name}: ", style="bold")
        head.append(check.message)
        out.print(head)
        if not check.ran:
            continue  # its SQL needs columns the file does not have yet (--json shows it)
        # soft_wrap: long SQL lines stay whole, so the text pastes into sqlite3 as is.
        out.print(check.sql + ";", soft_wrap=True, markup=False, highlight=False)
        _print_result(out, check)
    out.print()
    findings = [c for c in report.findings if c.ran]
    if findings:
        out.print("Findings, most serious first:", style="bold")
        for i, check in enumerate(findings, 1):
            line = Text(f"{i:>3}. ")
            line.append(f"{_LABELS[check.severity]:<5}", style=_STYLES[check.severity])
            line.append(f" {check.name}: {check.message}")
            out.print(line)
    skipped = [c.name for c in report.checks if not c.ran]
    if skipped:
        out.print(f"Not run until the schema is migrated: {', '.join(skipped)}")
    counts = {s: sum(c.severity == s and c.ran for c in report.checks) for s in _LABELS}
    tally = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    if skipped:
        tally += f", {len(skipped)} not run"
    verdict = "healthy" if report.healthy else "problems found"
    style = _STYLES["ok" if report.healthy else "error"]
    out.print(f"{verdict} ({tally}); exit {report.exit_code}", style=style)


def names_a_plug_in(text: str) -> bool:
    """Whether ``text`` names a store factory rather than a file (an existing file wins)."""
    from persisters.stores import StoreSpec, StoreSpecError

    if os.path.exists(text):
        return False
    try:
        return StoreSpec.parse(text).kind in ("factory", "entry-point")
    except StoreSpecError:
        return False


async def _doctor_plug_in(text: str) -> DoctorReport:
    from persisters.stores import StoreSpec
    from sim.ops.store_doctor import doctor_store

    spec = StoreSpec.parse(text)
    store = await spec.open_existing()
    try:
        return await doctor_store(store, spec.label)
    finally:
        await store.close()


@db.command(name="doctor")
@click.argument("file", type=click.Path(dir_okay=True, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def doctor_command(file: str, as_json: bool) -> None:
    """Check database FILE read-only; print each check with the SQL it ran and its result.

    FILE may be a server DSN (postgresql://HOST/DB?schema=NAME, mysql://USER@HOST/DB):
    the checks then run in that server's dialect on a read-only session. It may also name
    a store of your own (module:factory, or a 'turnsim.stores' name): the history checks
    then read it through the TurnStore Protocol.

    Exit 0 healthy (warnings and info allowed), 1 problems found (errors listed first),
    2 FILE is missing or not a usable SQLite database.
    """
    if "://" in file:
        from sim.ops.server_doctor import doctor_server

        report = _guarded("doctor", as_json, lambda: doctor_server(file))
    elif names_a_plug_in(file):
        report = _guarded("doctor", as_json, lambda: anyio.run(_doctor_plug_in, file))
    else:
        report = _guarded("doctor", as_json, lambda: doctor(file))
    if as_json:
        emit_json(report.to_json(), pretty=True)
    else:
        _print_doctor(report)
    raise click.exceptions.Exit(report.exit_code)


# ---------------------------------------------------------------------------------------
# samples


def _print_samples(turns: SampleStats, timeline: TimelineStats) -> None:
    out = _console()
    out.print(
        f"wrote {turns.path}: {turns.turn_rows} turns rows and {turns.snapshot_rows} "
        f"snapshots of {turns.conversations} conversations (seed {turns.seed})"
    )
    table = Table(title="a correct migration of it reports", title_justify="left")
    table.add_column("column")
    table.add_column("backfilled", justify="right")
    table.add_column("left unknown ('')", justify="right")
    for key, unknown in turns.unknown.items():
        table.add_row(key, str(turns.backfilled[key]), str(unknown))
    out.print(table)
    malformed = ", ".join(f"{t} {n}" for t, n in turns.malformed.items())
    out.print(f"malformed metadata rows: {malformed}")
    if turns.layout == "turnsim":
        out.print(
            f"old-server defects kept in it: {turns.phase_disagreement_turns} turns whose "
            f"phases disagree on the runtime, {turns.orphan_snapshot_turns} turns with orphan "
            f"snapshots, {turns.default_turn_id_conversations} conversations with the 'turn' "
            "default id"
        )
    else:
        out.print(
            f"old-server defects kept in it: {turns.late_switch_turns} turns switched during "
            "their inference (the layout keeps one runtime per turn row: the newest save's "
            f"metadata), {turns.default_turn_id_conversations} conversations with the 'turn' "
            "default id"
        )
    if timeline.layout == "turnsim":
        out.print(
            f"wrote {timeline.path}: {timeline.conversations} conversations "
            f"({timeline.pointers_empty} without a runtime pointer), {timeline.entities} "
            f"timeline entities ({timeline.switch_entities} recorded profile switches)"
        )
    else:
        out.print(
            f"wrote {timeline.path}: {timeline.conversations} timeline_conversations rows "
            f"({timeline.pointers_empty} without a runtime pointer)"
        )
    out.print(f"next: turnsim db doctor {turns.path}")


@db.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=str))
@click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True)
@click.option(
    "--conversations", type=click.IntRange(min=1), default=DEFAULT_CONVERSATIONS, show_default=True
)
@click.option(
    "--turns",
    type=click.IntRange(min=1),
    default=DEFAULT_TURNS,
    show_default=True,
    help="Most turns per conversation.",
)
@click.option("--force", is_flag=True, help="Replace existing turns.db / timeline3.db.")
@click.option(
    "--layout",
    type=click.Choice(["turnsim", "normalized"]),
    default="turnsim",
    show_default=True,
    help="turnsim: turnsim's old tables (turns, turn_snapshots, conversations); normalized: "
    "the real server's (turns, blocks, turn_block_membership; timeline_conversations).",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def samples(
    directory: str,
    seed: int,
    conversations: int,
    turns: int,
    force: bool,
    layout: str,
    as_json: bool,
) -> None:
    """Write realistic old databases DIRECTORY/turns.db and DIRECTORY/timeline3.db.

    Deterministic from --seed; both files describe the same conversations, in either
    layout (the same history).
    """
    make = make_samples if layout == "turnsim" else make_real_samples
    turn_stats, timeline_stats = _guarded(
        "samples",
        as_json,
        lambda: make(
            directory, seed=seed, conversations=conversations, turns=turns, overwrite=force
        ),
    )
    if as_json:
        emit_json(
            {"turns": turn_stats.to_json(), "timeline": timeline_stats.to_json()}, pretty=True
        )
    else:
        _print_samples(turn_stats, timeline_stats)
