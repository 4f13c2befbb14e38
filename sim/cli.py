"""The ``turnsim`` command line: a thin layer over library calls, ``--json`` everywhere."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="turnsim")
def cli() -> None:
    """Deterministic simulator of a chat server's per-turn runtime and persistence path."""


def _register() -> None:
    from sim.cli_db import db
    from sim.cli_serve import serve

    cli.add_command(db)
    cli.add_command(serve)


_register()


def main() -> None:
    cli()
