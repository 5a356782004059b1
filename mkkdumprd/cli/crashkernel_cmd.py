"""`mkkdumprd crashkernel` (placeholder until its issue lands)."""

import click

COMMANDS: list[click.Command] = []
