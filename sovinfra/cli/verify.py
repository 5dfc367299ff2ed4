"""`sovinfra verify`: prove the site works (health of every GPU node, SLOs of every inference endpoint)."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from sovinfra.cli.options import limit_option, site_endpoint_option, vault_password_option
from sovinfra.errors import UserError
from sovinfra.inventory import secrets, site
from sovinfra.inventory.model import select_hosts


@click.group()
def verify() -> None:
    """Verify the site: GPU health on every node, load on every inference endpoint."""


@verify.command()
@click.option("-i", "--inventory", "inventory_path", help="inventory directory or hosts.yml")
@limit_option
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


@verify.command()
@click.option("-i", "--inventory", "inventory_path", help="inventory directory or hosts.yml")
@limit_option
@vault_password_option
@site_endpoint_option
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def load(
    inventory_path: str | None,
    limit: str | None,
    vault_password_file: str | None,
    site_endpoint: bool,
    as_json: bool,
) -> None:
    """Load-test every inference endpoint the inventory declares against its SLOs; non-zero on any miss:
    each node's services, and the site endpoint (group inference_gateway) for each model they serve.

    One endpoint at a time, so one endpoint's load never shows up as another's latency.
    """
    from sovinfra import paths
    from sovinfra.loadtest import targets
    from sovinfra.loadtest.check import check

    path = site.resolve(inventory_path)
    inv, _ = site.load_checked(path)
    chosen = select_hosts(inv, limit)
    outside = sorted(set(chosen) - inv.hosts_in("inference") - inv.hosts_in("inference_gateway"))
    if limit and outside:
        raise UserError(f"--limit: not in group inference or inference_gateway: {', '.join(outside)}")
    vault = secrets.vault_lib(site.vault_password_file(vault_password_file, path))
    found = targets.chosen(inv, chosen, paths.project_root() / "roles", vault, site_endpoint)
    if not found:
        raise UserError(f"{path}: no inference endpoints: set inference_services on hosts of group inference")

    results = [check(t, None if as_json else click.echo) for t in found]
    failed = [r for r in results if not r["passed"]]
    if as_json:
        click.echo(json.dumps({"ok": not failed, "endpoints": results}, indent=2))
    else:
        click.echo(f"{'HOST':<12} {'SERVICE':<14} {'OK':>7} {'TTFT50':>8} {'TTFT99':>8} {'TPOT50':>8} "
                   f"{'TOK/S':>8}  RESULT")  # fmt: skip
        for r in results:
            s = r["summary"]
            cells = [s["ttft_ms"]["p50"], s["ttft_ms"]["p99"], s["tpot_ms"]["p50"]] if s else [None] * 3
            numbers = " ".join(f"{v:>8.1f}" if v is not None else f"{'-':>8}" for v in cells)
            ok = f"{s['requests_ok']}/{s['requests']}" if s else "-"
            tps = f"{s['output_tokens_per_s']:>8.1f}" if s else f"{'-':>8}"
            verdict = "pass" if r["passed"] else "FAIL: " + "; ".join(r["reasons"])
            click.echo(f"{r['host']:<12} {r['service']:<14} {ok:>7} {numbers} {tps}  {verdict}")
    if failed:
        raise SystemExit(1)
