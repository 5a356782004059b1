"""`mkkdumprd deps modules` (placeholder until module resolution lands)."""

import click


@click.command()
def modules() -> None:
    """Kernel module closure (not implemented yet)."""
    raise click.ClickException("not implemented yet")
