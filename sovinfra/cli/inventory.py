"""`sovinfra inventory`: checking a site's inventory."""

from __future__ import annotations

import json

import click

from sovinfra.inventory import site


@click.group()
def inventory() -> None:
    """Work with Ansible inventories."""


@inventory.command()
@click.option("-i", "--inventory", "inventory_path", help="inventory directory or hosts.yml")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def check(inventory_path: str | None, as_json: bool) -> None:
    """Validate structure and every variable against the roles' specs, and every inference service's
    declaration (names, ports, pinned commits and images); touches no host."""
    path = site.resolve(inventory_path)
    inv, problems = site.load_checked(path)
    site.check_deployable(inv, {})
    groups = {g: sorted(inv.hosts_in(g)) for g in sorted(inv.groups) if g != "all"}
    if as_json:
        click.echo(
            json.dumps(
                {
                    "inventory": str(path),
                    "ok": True,
                    "hosts": sorted(inv.hosts),
                    "groups": groups,
                    "warnings": [str(p) for p in problems],
                },
                indent=2,
            )
        )
        return
    for p in problems:
        click.echo(f"warning: {p}", err=True)
    click.echo(f"{path}: OK, {len(inv.hosts)} hosts in {len(groups)} groups")
