"""``turnsim serve`` (placeholder until the debug API work lands)."""

import click


@click.command()
def serve() -> None:
    """Serve the debug HTTP API over a database."""
