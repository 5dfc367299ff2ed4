"""The `sovinfra` command: a click group, one module per verb."""

from __future__ import annotations

import sys

import click

from sovinfra import __version__
from sovinfra.errors import UserError


class SovinfraGroup(click.Group):
    """Turns UserError into a one-line message and exit 2: no tracebacks for user errors."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except UserError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=SovinfraGroup)
@click.version_option(__version__, prog_name="sovinfra")
def cli() -> None:
    """Provision, verify and rebuild an owned GPU site over SSH."""


def _register() -> None:
    from sovinfra.cli import apply, facts, inventory, lab

    cli.add_command(lab.lab)
    cli.add_command(inventory.inventory)
    cli.add_command(apply.apply)
    cli.add_command(facts.facts)


_register()


def main() -> None:
    cli()
