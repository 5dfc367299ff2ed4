"""`sovinfra upgrade`: the NVIDIA stack rolled to the inventory's pins, batch by batch, each node out of
the site endpoint while it changes and back only once proven (playbooks/upgrade.yml).

Before anything runs: the batch size is checked against the nodes in scope, their health read (an
unhealthy node is refused unless --allow-unhealthy), and a check run of the same playbook says which
nodes would change. Only those are upgraded, plus any an earlier stop left out of the site endpoint: a
re-run continues where the last one stopped. Each rollout's plan and outcome is kept beside the inventory
(`upgrades/<time>.json`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from sovinfra import atomic
from sovinfra.ansible import runner
from sovinfra.cli.apply import check_lock, playbook_path, run_with_progress
from sovinfra.cli.options import extra_vars_option, limit_option, strategy_option, vault_password_option
from sovinfra.errors import UserError
from sovinfra.fleet import rollout
from sovinfra.inventory import site
from sovinfra.inventory.model import select_hosts


def _refuse_unhealthy(inv: Any, hosts: list[str]) -> dict[str, str]:
    """{host: why} for nodes unhealthy or unreachable now (the health agent, as `verify health` runs it)."""
    from sovinfra.fleet import health as fleet_health
    from sovinfra.fleet.connection import read_all

    fleet = fleet_health.gather(read_all(inv, hosts, fleet_health.AgentReport))
    why: dict[str, str] = {}
    for row in fleet.rows():  # a failing host's worst finding first, or why it could not be read
        if row.host in fleet.failed_hosts:
            why.setdefault(row.host, f"{row.status}: " + " ".join(filter(None, [row.check, row.message])))
    return why


@click.command()
@click.option("-i", "--inventory", "inventory_path", help="inventory directory or hosts.yml")
@click.option("--batch", default="1", show_default=True, help="nodes at a time: a number or a percent (25%)")
@limit_option
@click.option("--check", is_flag=True, help="say what each batch would change; drain and change nothing")
@click.option("--allow-unhealthy", is_flag=True, help="upgrade even though a node is unhealthy now")
@extra_vars_option
@vault_password_option
@strategy_option
@click.option("--json", "as_json", is_flag=True, help="print the plan and each host's outcome")
def upgrade(
    inventory_path: str | None,
    batch: str,
    limit: str | None,
    check: bool,
    allow_unhealthy: bool,
    extra_vars: tuple[str, ...],
    vault_password_file: str | None,
    strategy_name: str,
    as_json: bool,
) -> None:
    """Roll the NVIDIA stack on GPU nodes to the inventory's pins, batch by batch, without failing a
    request at the site endpoint: drain, stop services, converge (reboot only if the driver needs it),
    verify health, start services behind their gates and a probe, return. The first failed batch stops
    the rollout and stays drained; run again to continue."""
    path = site.resolve(inventory_path)
    extra = site.parse_extra_vars(extra_vars)
    inv, _ = site.load_checked(path, extra)
    site.check_deployable(inv, extra)
    hosts = select_hosts(inv, limit, within="gpu_nodes")
    if not hosts:
        raise UserError(f"{path}: the gpu_nodes group has no hosts")
    size = rollout.batch_size(batch, len(hosts))
    check_lock(inv, limit)
    unhealthy = _refuse_unhealthy(inv, hosts)
    if unhealthy and not allow_unhealthy:
        named = "; ".join(f"{h}: {why}" for h, why in sorted(unhealthy.items()))
        raise UserError(f"not upgrading: {named} (repair first, or --allow-unhealthy)")
    vault = site.vault_password_file(vault_password_file, path)
    playbook = playbook_path("upgrade")

    # Which nodes would change (one check run, every node at once); nothing is drained by it.
    probe = runner.PlaybookRun(playbook, path, ",".join(hosts), check=True,
                               extra_vars={**extra, "upgrade_batch": len(hosts)})  # fmt: skip
    looked, _ = run_with_progress(probe, vault, len(inv.hosts), strategy_name, quiet=True)
    if not looked.ok:
        for f in looked.recap.failures:
            click.echo(f"failed: {f['host']}: {f['task']}: {f['msg']}", err=True)
        raise UserError("the check run failed; nothing was drained or changed")
    changes = rollout.planned_changes(looked.recap.changes, hosts)
    plan = rollout.batches(list(changes), size)
    doc: dict[str, Any] = {"batch_size": size, "nodes": hosts, "unhealthy": unhealthy,
                           "plan": [{"batch": n, "hosts": {h: changes[h] for h in b}}
                                    for n, b in enumerate(plan, 1)]}  # fmt: skip
    if check or not plan:
        if as_json:
            click.echo(json.dumps(doc, indent=2))
        elif not plan:
            click.echo(f"nothing to upgrade: {len(hosts)} node(s) already at the inventory's pins")
        else:
            for entry in doc["plan"]:
                for host, tasks in entry["hosts"].items():
                    click.echo(f"batch {entry['batch']}: {host}: {len(tasks)} change(s): {'; '.join(tasks)}")
        return

    run = runner.PlaybookRun(playbook, path, ",".join(sorted(changes)),
                             extra_vars={**extra, "upgrade_batch": size})  # fmt: skip
    started = datetime.now(UTC)
    result, _ = run_with_progress(run, vault, len(inv.hosts), strategy_name, quiet=as_json)
    doc["batches"] = rollout.outcome(plan, result.recap.as_dict())
    doc["ok"] = result.ok
    doc["started"] = started.isoformat(timespec="seconds")
    doc["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    record = inv.hosts_file.parent / "upgrades" / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    atomic.write_text(record, json.dumps(doc, indent=2) + "\n")
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        for entry in doc["batches"]:
            for row in entry["hosts"]:
                why = f": {row['task']}: {row['why']}" if row["result"] == "failed" else ""
                click.echo(f"batch {entry['batch']}: {row['host']:<16} {row['result']}{why}")
        click.echo(f"record: {record}")
    if not result.recap.complete and result.stderr.strip():
        click.echo(result.stderr.strip()[-3000:], err=True)
    if not result.ok:
        failed = ", ".join(result.recap.failed_hosts) or "the playbook did not complete"
        click.echo(f"upgrade stopped: {failed}; that batch stays out of the site endpoint, "
                   "the rest keeps serving; run again to continue", err=True)  # fmt: skip
        raise SystemExit(1)
