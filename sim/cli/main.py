"""The ``turnsim`` command line: a thin layer over library calls, ``--json`` everywhere.

Exit codes: 0 all good, 1 a scenario (or check) failed, 2 bad input.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import IO, Any

import anyio
import click

from persisters.model import dumps
from sim.logs.setup import LEVELS, configure_logging

BACKENDS = ("asyncio", "trio")


def fail_input(message: str) -> None:
    """Print one clear line for bad input and exit 2 (never a traceback)."""
    click.echo(f"turnsim: {message}", err=True)
    sys.exit(2)


@contextlib.contextmanager
def logging_to(log_file: str | None, log_format: str | None, level: str) -> Iterator[None]:
    """Route the run's structlog events: JSON to a file by default, else console on stderr."""
    stream: IO[str] | None = None
    try:
        if log_file:
            stream = sys.stdout if log_file == "-" else open(log_file, "w", encoding="utf-8")  # noqa: SIM115
            configure_logging(fmt=log_format or "json", stream=stream, level=level)
        elif log_format:
            configure_logging(fmt=log_format, level=level)
        else:
            configure_logging(fmt="console", level="error")
        yield
    finally:
        configure_logging(fmt="console", level="error")  # never leave structlog on a closed file
        if stream is not None and stream is not sys.stdout:
            stream.close()


def log_options(fn: Any) -> Any:
    fn = click.option(
        "--log-level",
        type=click.Choice(LEVELS),
        default="info",
        show_default=True,
        help="Lowest level written to the log.",
    )(fn)
    fn = click.option(
        "--log-format",
        type=click.Choice(["json", "console"]),
        default=None,
        help="json (default for --log-file) or console (readable).",
    )(fn)
    fn = click.option(
        "--log-file",
        type=click.Path(dir_okay=False),
        default=None,
        help="Write the structured log here ('-' for stdout).",
    )(fn)
    return fn


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="turnsim")
def cli() -> None:
    """Deterministic simulator of a chat server's per-turn runtime and persistence path."""


def _load_all(paths: tuple[str, ...]) -> list[Any]:
    from sim.scenario.parse import ScenarioError, discover, load_scenario

    try:
        files = discover(list(paths))
        if not files:
            fail_input(f"no scenario files (*.yaml) under {', '.join(paths)}")
        return [load_scenario(f) for f in files]
    except ScenarioError as exc:
        fail_input(str(exc))
    raise AssertionError("unreachable")


@cli.command()
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--db",
    type=click.Path(dir_okay=False),
    default=None,
    help="Keep the SQLite database here (default: a temporary file).",
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
) -> None:
    """Run scenario files (or folders of them) and check every invariant."""
    from persisters.errors import StoreError
    from sim.runtime.variants import UnknownVariantError, parse_variants
    from sim.scenario.report import print_results
    from sim.scenario.runner import run_scenario

    try:
        variants = parse_variants(variant)
    except UnknownVariantError as exc:
        fail_input(str(exc))
    scenarios = _load_all(paths)
    if serve and db is None:
        fail_input("--serve needs --db FILE (the database to keep serving)")

    async def main() -> list[Any]:
        results = []
        for scenario in scenarios:
            results.append(await run_scenario(scenario, seed=seed, variants=variants, db=db))
        return results

    with logging_to(log_file, log_format, log_level):
        try:
            results = anyio.run(main, backend=backend)
        except StoreError as exc:
            fail_input(str(exc))
    print_results(results, as_json=as_json)
    if serve:
        from sim.api.serve import serve_database, until_signalled
        from sim.runtime.variants import build

        def announce(url: str) -> None:
            click.echo(f"serving {db} at {url}/api/debug/conversations (Ctrl-C to stop)", err=True)

        async def serve_run_db() -> None:
            await serve_database(
                db, host="127.0.0.1", port=port, ready=announce, read_path=build(variants).read_path
            )

        with contextlib.suppress(KeyboardInterrupt):
            anyio.run(until_signalled, serve_run_db, backend=backend)
    sys.exit(0 if all(r.passed for r in results) else 1)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def variants(as_json: bool) -> None:
    """List the bug variants, one line each."""
    from sim.runtime.variants import VARIANTS

    if as_json:
        click.echo(
            json.dumps([{"name": k, "description": v} for k, v in VARIANTS.items()], indent=2)
        )
        return
    width = max(map(len, VARIANTS))
    for name, description in VARIANTS.items():
        click.echo(f"{name:<{width}}  {description}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def invariants(as_json: bool) -> None:
    """List the invariant checkers, one line each."""
    from sim.scenario.invariants import INVARIANTS

    if as_json:
        click.echo(dumps([{"name": k, "description": v} for k, v in INVARIANTS.items()]))
        return
    width = max(map(len, INVARIANTS))
    for name, description in INVARIANTS.items():
        click.echo(f"{name:<{width}}  {description}")


def _register() -> None:
    from sim.cli.db import db
    from sim.cli.explore import explore
    from sim.cli.logs import logs
    from sim.cli.serve import serve

    for command in (db, explore, logs, serve):
        cli.add_command(command)


_register()


def main() -> None:
    cli()
