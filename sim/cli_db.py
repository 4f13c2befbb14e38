"""``turnsim db ...`` (placeholder until the database-operations work lands)."""

import click


@click.group()
def db() -> None:
    """Operate databases: migrate and doctor."""
