"""`sovinfra facts`: read-only facts from every host, through pyinfra."""

from __future__ import annotations

import json

import click

from sovinfra.cli.options import limit_option
from sovinfra.fleet.connection import read_all
from sovinfra.fleet.facts import NodeFacts
from sovinfra.inventory import site
from sovinfra.inventory.model import select_hosts


@click.command()
@click.option("-i", "--inventory", "inventory_path", help="inventory directory or hosts.yml")
@limit_option
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def facts(inventory_path: str | None, limit: str | None, as_json: bool) -> None:
    """OS, kernel, CPU, memory, disks, NVIDIA PCI devices and Secure Boot of every host."""
    path = site.resolve(inventory_path)
    inv, _ = site.load_checked(path)
    hosts = select_hosts(inv, limit)
    reads = read_all(inv, hosts, NodeFacts)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "hosts": {
                        h: {"reachable": r.reachable, "error": r.error, "facts": r.value}
                        for h, r in reads.items()
                    }
                },
                indent=2,
            )
        )
    else:
        click.echo(
            f"{'HOST':<12} {'OS':<32} {'KERNEL':<22} {'CPUS':>4} {'MEM GiB':>8} {'GPUS':>4} SECURE BOOT"
        )
        for h, r in reads.items():
            if not r.reachable:
                click.echo(f"{h:<12} unreachable: {r.error}")
                continue
            f = r.value
            mem = f"{(f.get('mem_kib') or 0) / 1048576:.1f}"
            click.echo(
                f"{h:<12} {f.get('os_name', '')[:32]:<32} {f.get('kernel', '')[:22]:<22} "
                f"{f.get('cpus') or 0:>4} {mem:>8} {len(f['nvidia_pci']):>4} {f.get('secure_boot')}"
            )
    if any(not r.reachable for r in reads.values()):
        raise SystemExit(1)
