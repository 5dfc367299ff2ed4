"""`sovinfra drift`: every host read in parallel (read-only) and compared with the lock."""

from __future__ import annotations

import json
import time
from dataclasses import asdict

import click

from sovinfra import paths
from sovinfra.cli.options import limit_option
from sovinfra.fleet.state import read_states
from sovinfra.inventory import model, site
from sovinfra.lock import build, schema
from sovinfra.lock import drift as judge
from sovinfra.mirror import apt_plan


@click.command()
@click.option("-i", "--inventory", "inventory_path", help="inventory directory or hosts.yml")
@limit_option
@click.option("--quick", is_flag=True, help="models: only files written since verified are re-hashed")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def drift(inventory_path: str | None, limit: str | None, quick: bool, as_json: bool) -> None:
    """Compare hosts with the lock: exit 0 clean, 1 drift, 2 cannot run (bad lock, host unreachable)."""
    path = site.resolve(inventory_path)
    inv, _ = site.load_checked(path)
    lock_path = schema.path_for(inv.hosts_file.parent)
    lock = schema.load(lock_path)  # a bad lock stops here, before any host is read
    roles_dir = paths.project_root() / "roles"
    hosts = model.select_hosts(inv, limit)
    venv, cache = build.node_paths(inv, roles_dir)
    started = time.monotonic()
    reads = read_states(inv, hosts, venv, cache, apt_plan.needed_packages(inv, roles_dir), rehash=not quick)
    seconds = time.monotonic() - started
    items: list[judge.Item] = []
    unreachable = {h: r.error for h, r in reads.items() if not r.reachable}
    for host in hosts:
        if host not in unreachable:
            items += judge.judge(lock, host, reads[host].value, cache)
    if as_json:
        doc = {
            "lock": str(lock_path),
            "hosts": len(hosts),
            "seconds": round(seconds, 3),
            "unreachable": unreachable,
            "items": [asdict(i) for i in items],
        }
        click.echo(json.dumps(doc, indent=2))
    else:
        _table(hosts, items, unreachable)
        click.echo(
            f"{len(items)} drifted item(s) on {len(hosts)} host(s), read in {seconds:.1f} s ({lock_path})"
        )
    raise SystemExit(2 if unreachable else 1 if items else 0)


def _table(hosts: list[str], items: list[judge.Item], unreachable: dict[str, str]) -> None:
    for host in hosts:
        if host in unreachable:
            click.echo(f"{host}: cannot read: {unreachable[host]}")
            continue
        mine = [i for i in items if i.host == host]
        click.echo(f"{host}: {'clean' if not mine else f'{len(mine)} drifted'}")
        for kind in judge.KINDS:
            for i in (i for i in mine if i.kind == kind):
                click.echo(f"  {kind:<9} {i.what:<60} expected {i.expected}, found {i.found}")
