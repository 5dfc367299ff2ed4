"""The `sovinfra` command: a click group, one module per verb."""

from __future__ import annotations

import importlib
import json
import sys

import click

from sovinfra import __version__
from sovinfra.errors import UserError

# Verb -> module:attribute. Imported on use, so `sovinfra health` on a GPU node loads neither
# Ansible nor pyinfra.
COMMANDS = {
    "lab": "sovinfra.cli.lab:lab",
    "inventory": "sovinfra.cli.inventory:inventory",
    "apply": "sovinfra.cli.apply:apply",
    "facts": "sovinfra.cli.facts:facts",
    "health": "sovinfra.cli.health:health",
    "verify": "sovinfra.cli.verify:verify",
    "mirror": "sovinfra.cli.mirror:mirror",
    "loadtest": "sovinfra.cli.loadtest:loadtest",
    "audit": "sovinfra.cli.audit:audit",
    "lock": "sovinfra.cli.lock:lock",
    "drift": "sovinfra.cli.drift:drift",
    "rebuild": "sovinfra.cli.rebuild:rebuild",
    "upgrade": "sovinfra.cli.upgrade:upgrade",
    "acceptance": "sovinfra.cli.acceptance:acceptance",
    "bmc": "sovinfra.cli.bmc:bmc",
    "provision": "sovinfra.cli.provision:provision",
}


class SovinfraGroup(click.Group):
    """Loads verbs lazily; turns UserError into a one-line message and exit 2 (no tracebacks)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target.split(":")
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["sovinfra.json"] = "--json" in args
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except UserError as exc:
            click.echo(f"error: {exc}", err=True)
            if ctx.meta.get("sovinfra.json"):  # a machine reading --json gets the error as JSON too
                click.echo(json.dumps({"error": str(exc), "exit_code": 2}))
            sys.exit(2)


@click.group(cls=SovinfraGroup)
@click.version_option(__version__, prog_name="sovinfra")
def cli() -> None:
    """Provision, verify and rebuild an owned GPU site over SSH."""


def main() -> None:
    cli()
