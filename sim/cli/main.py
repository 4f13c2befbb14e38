"""The ``turnsim`` command line: a thin layer over library calls, ``--json`` everywhere.

Exit codes: 0 all good, 1 a scenario (or check) failed, 2 bad input.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import anyio
import click

from sim.cli._common import (
    BACKENDS,
    emit_json,
    fail,
    load_scenarios,
    log_options,
    logging_to,
    parse_store,
    store_option,
)
from sim.printable import printable

#: Where the documentation lives (the README's "Documentation" list has every page).
DOCS = "docs/ in the turnsim source: scenarios.md, authoring.md, logs.md, api.md"


class OneLineErrors(click.Group):
    """The ``turnsim`` group: a usage error (an unknown option, a bad value, a missing
    argument) is one line on stderr, ``turnsim CMD: error: ...; see turnsim CMD --help``,
    exit 2, instead of click's usage block; everything else is click's standalone mode."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("standalone_mode", True):
            return super().main(*args, **kwargs)
        try:
            code = super().main(*args, **{**kwargs, "standalone_mode": False})
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "turnsim"
            message = " ".join(exc.format_message().split()).rstrip(".")
            click.echo(printable(f"{where}: error: {message}; see {where} --help"), err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(
                printable(f"turnsim: error: {' '.join(exc.format_message().split())}"), err=True
            )
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(
    cls=OneLineErrors,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=f'Documentation: {DOCS}. Shell completion: eval "$(_TURNSIM_COMPLETE=bash_source '
    'turnsim)" (zsh_source, fish_source for those shells; docs/authoring.md).',
)
@click.version_option(package_name="turnsim")
def cli() -> None:
    """Deterministic simulator of a chat server's per-turn runtime and persistence path."""


def _complete_variants(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion of --variant: the registry's names (after a '+', the next one)."""
    from click.shell_completion import CompletionItem

    from sim.runtime.variants import VARIANTS

    head, _, last = incomplete.rpartition("+")
    prefix = f"{head}+" if head else ""
    return [
        CompletionItem(prefix + name, help=text.split(" (")[0])
        for name, text in VARIANTS.items()
        if name.startswith(last)
    ]


def _complete_scenarios(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion of scenario paths: folders, and *.yaml / *.yml files."""
    from click.shell_completion import CompletionItem

    return [CompletionItem(incomplete, type="file")]


@cli.command(
    epilog="Docs: docs/scenarios.md (files, steps, invariants), docs/logs.md (--log-file)."
)
@click.argument("paths", nargs=-1, required=True, shell_complete=_complete_scenarios)
@click.option(
    "--db",
    default=None,  # what a file must be is the admission's to say (persisters.sqlite_file)
    help=(
        "Keep the run here: a SQLite file, or with a server --store the schema (PostgreSQL) "
        "or database (MySQL) to keep it in (default: a temporary one, removed after)."
    ),
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**63 - 1),
    default=None,
    help="Override every scenario's seed.",
)
@click.option(
    "--variant",
    default=None,
    shell_complete=_complete_variants,
    help="Re-introduce bug variants, e.g. late-snapshot-runtime (combine with '+').",
)
@click.option("--backend", type=click.Choice(BACKENDS), default="asyncio", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report.")
@click.option("--serve", is_flag=True, help="Keep serving the run's database over the debug API.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port for --serve.",
)
@click.option(
    "--check-determinism",
    is_flag=True,
    help="Run the scenarios in fresh processes under two PYTHONHASHSEEDs and on both "
    "backends and compare the logs (exit 1 on a divergence, showing its first event).",
)
@store_option("sqlite")
@log_options
def run(
    paths: tuple[str, ...],
    db: str | None,
    seed: int | None,
    variant: str | None,
    backend: str,
    as_json: bool,
    serve: bool,
    port: int,
    log_file: str | None,
    log_format: str | None,
    log_level: str,
    store_spec: str,
    check_determinism: bool,
) -> None:
    """Run scenario files (or folders of them) and check every invariant."""
    from persisters.errors import StoreError
    from persisters.server_sql import NAMESPACE
    from persisters.stores import StoreSpecError
    from sim.runtime.variants import UnknownVariantError, parse_variants
    from sim.scenario.report import print_results
    from sim.scenario.runner import run_scenario

    def check_namespace_option(name: str) -> None:
        if not NAMESPACE.match(name):
            fail(f"--db {name!r}: on a server, --db names a schema/database: letters, digits, '_'")

    try:
        variants = parse_variants(variant)
    except UnknownVariantError as exc:
        fail(str(exc))
    if as_json and log_file == "-":
        fail(
            "--json and --log-file - both write to stdout; write the log to a file "
            "(--log-file run.jsonl) or drop --json (the table then goes to stderr)"
        )
    store = parse_store(store_spec)
    if db is not None and not store.takes_db:
        fail(
            f"--db keeps a SQLite file (or a server's schema); --store {store.label} keeps "
            "nothing of its own (drop one of them)"
        )
    if db is not None and store.is_server:
        check_namespace_option(db)
    scenarios = load_scenarios(paths)
    if check_determinism:
        from sim.cli.determinism import check_determinism_command

        if db is not None or serve or log_file is not None:
            fail("--check-determinism makes its own runs: drop --db, --serve and --log-file")
        args = [*(("--seed", str(seed)) if seed is not None else ()), "--store", store_spec]
        args += ["--variant", variant] if variant else []
        sys.exit(check_determinism_command(paths, args, as_json))
    if serve and db is None:
        fail("--serve needs --db FILE (the database to keep serving)")

    async def main() -> list[Any]:
        results = []
        for scenario in scenarios:
            results.append(
                await run_scenario(scenario, seed=seed, variants=variants, db=db, store=store)
            )
        return results

    with logging_to(log_file, log_format, log_level):
        try:
            results = anyio.run(main, backend=backend)
        except (StoreError, StoreSpecError) as exc:
            fail(str(exc))
    # With the log on stdout (`--log-file -`) the JSON lines own it: the table goes to stderr.
    print_results(results, as_json=as_json, out=sys.stderr if log_file == "-" else sys.stdout)
    if serve:
        from sim.api.serve import serve_database, until_signalled
        from sim.runtime.variants import build

        served = store.dsn_for(db) if store.is_server else db
        shown = parse_store(served).label if store.is_server else db

        def announce(url: str) -> None:
            click.echo(f"serving {shown} at {url}/api/debug/ (Ctrl-C to stop)", err=True)

        async def serve_run_db() -> None:
            await serve_database(
                served,
                host="127.0.0.1",
                port=port,
                ready=announce,
                read_path=build(variants).read_path,
            )

        with contextlib.suppress(KeyboardInterrupt):
            anyio.run(until_signalled, serve_run_db, backend=backend)
    sys.exit(0 if all(r.passed for r in results) else 1)


@cli.command(epilog="Docs: docs/scenarios.md (bug variants), docs/authoring.md (--check).")
@click.argument("paths", nargs=-1, shell_complete=_complete_scenarios)
@click.option(
    "--check",
    is_flag=True,
    help="Run the scenarios under PATHS under every variant: which variant each one "
    "catches (by invariant), which none does, and the mutation score.",
)
@click.option(
    "--describe",
    "describe",
    metavar="NAME",
    shell_complete=_complete_variants,
    help="One variant in full: its source, the bug, the substitution, and the scenario "
    "that catches it (run now, with and without it) with the replay command.",
)
@click.option("--backend", type=click.Choice(BACKENDS), default="asyncio", show_default=True)
@click.option("--progress/--no-progress", default=True, help="Progress bar on stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def variants(
    paths: tuple[str, ...],
    check: bool,
    describe: str | None,
    backend: str,
    progress: bool,
    as_json: bool,
) -> None:
    """List the bug variants, one line each; with --check PATH..., the suite's mutation
    score (exit 1 when a variant is caught by no scenario); with --describe NAME, one
    variant in full (exit 1 when its scenario does not catch it)."""
    from sim.runtime.variants import UnknownVariantError, available

    if describe is not None:
        from sim.cli.mutation import describe_variant

        if check:
            fail("--describe and --check do not go together; use one of them")
        sys.exit(describe_variant(describe, paths, backend, as_json))
    if paths and not check:
        fail("PATHS are checked with --check: turnsim variants --check scenarios/")
    if check:
        from sim.cli.mutation import check_variants

        if not paths:
            fail("--check needs the scenario files or folders to check, e.g. scenarios/")
        sys.exit(check_variants(load_scenarios(paths), backend, progress, as_json))

    try:
        loaded = available()
    except UnknownVariantError as exc:
        fail(str(exc))
    found = {name: v.description for name, v in loaded.items()}
    if as_json:
        emit_json(
            [
                {
                    "name": k,
                    "description": v.description,
                    "source": v.source,
                    "caught_by": v.caught_by,
                }
                for k, v in loaded.items()
            ],
            pretty=True,
        )
        return
    width = max(map(len, found))
    for name, description in found.items():
        source = loaded[name].source
        click.echo(f"{name:<{width}}  {description}" + (f" [{source}]" if source else ""))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def invariants(as_json: bool) -> None:
    """List the invariant checkers, one line each."""
    from sim.scenario.invariants import INVARIANTS

    if as_json:
        emit_json([{"name": k, "description": v} for k, v in INVARIANTS.items()])
        return
    width = max(map(len, INVARIANTS))
    for name, description in INVARIANTS.items():
        click.echo(f"{name:<{width}}  {description}")


def _register() -> None:
    from sim.cli.authoring import new, schema
    from sim.cli.check import check
    from sim.cli.conformance import conformance
    from sim.cli.db import db
    from sim.cli.explore import explore
    from sim.cli.logs import logs
    from sim.cli.reads import history, turns
    from sim.cli.serve import serve

    for command in (check, conformance, db, explore, logs, serve, turns, history, new, schema):
        cli.add_command(command)


_register()


def main() -> None:
    # One name, however it is started (`turnsim`, `python -m sim`): usage lines and shell
    # completion (_TURNSIM_COMPLETE) are the same.
    cli(prog_name="turnsim", complete_var="_TURNSIM_COMPLETE")
