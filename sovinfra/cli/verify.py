"""`sovinfra verify`: prove the site works (health of every GPU node; load tests come next)."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from sovinfra.errors import UserError
from sovinfra.inventory import site
from sovinfra.inventory.model import select_hosts


@click.group()
def verify() -> None:
    """Verify the site: GPU health on every node."""


@verify.command()
@click.option("-i", "--inventory", "inventory_path", help="inventory directory or hosts.yml")
@click.option("--limit", help="comma-separated GPU nodes")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def health(inventory_path: str | None, limit: str | None, as_json: bool) -> None:
    """Run the health agent on every GPU node in parallel; non-zero if any node fails or is unreachable."""
    from sovinfra.fleet import health as fleet_health
    from sovinfra.fleet.connection import read_all

    path = site.resolve(inventory_path)
    inv, _ = site.load_checked(path)
    hosts = select_hosts(inv, limit, within="gpu_nodes")
    if not hosts:
        raise UserError(f"{path}: the gpu_nodes group has no hosts")
    fleet = fleet_health.gather(read_all(inv, hosts, fleet_health.AgentReport))
    if as_json:
        click.echo(json.dumps({"ok": not fleet.failed_hosts, "failed_hosts": fleet.failed_hosts,
                               "hosts": fleet.hosts}, indent=2))  # fmt: skip
    else:
        click.echo(f"{'HOST':<12} {'STATUS':<12} {'GPU':>3} {'SERIAL':<16} {'BUS ID':<18} {'SEV':<5} "
                   f"{'CHECK':<14} MESSAGE")  # fmt: skip
        for r in (asdict(row) for row in fleet.rows()):
            click.echo(
                f"{r['host']:<12} {r['status']:<12} {r['gpu']:>3} {r['serial']:<16} "
                f"{r['bus_id']:<18} {r['severity']:<5} {r['check']:<14} {r['message']}"
            )
    if fleet.failed_hosts:
        raise SystemExit(1)
