"""`mkkdumprd deps libs` (placeholder until the ELF closure lands)."""

import click


@click.command()
def libs() -> None:
    """ELF library closure (not implemented yet)."""
    raise click.ClickException("not implemented yet")
