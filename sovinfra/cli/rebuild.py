"""`sovinfra rebuild HOST`: a re-imaged host back to what the lock says, from the mirror only, proven.

The steps are the commands an operator would run (`provision` with --reinstall, `apply --limit`, `drift`,
`verify health`, `verify load`), each as its own process with --json; the outcome is a record beside the
inventory. An interrupted rebuild is run again: every step converges or reads.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from sovinfra import atomic, paths
from sovinfra.acceptance import rundir
from sovinfra.cli.options import other_machine_option, vault_password_option
from sovinfra.cli.steps import echo_table
from sovinfra.cli.steps import run as run_step
from sovinfra.errors import UserError
from sovinfra.fleet.state import read_states
from sovinfra.inventory import site
from sovinfra.lock import build, gate, schema
from sovinfra.lock import rebuild as judge


@click.command()
@click.argument("host")
@click.option("-i", "--inventory", "inventory_path", help="inventory directory or hosts.yml")
@click.option("--yes", is_flag=True, help="do not ask before converging the host")
@other_machine_option
@click.option("--reinstall", is_flag=True, help="erase and install its OS through its BMC first (provision)")
@vault_password_option
@click.option("--json", "as_json", is_flag=True, help="print the record")
def rebuild(
    host: str, inventory_path: str | None, yes: bool, other_machine: bool, reinstall: bool,
    vault_password_file: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Converge HOST from the lock and the mirror only, then drift, health and load; keep a record."""
    path = site.resolve(inventory_path)
    inv, _ = site.load_checked(path)
    if host not in inv.hosts:
        raise UserError(f"{inv.hosts_file}: no host {host!r}")
    lock_path = schema.path_for(inv.hosts_file.parent)
    lock = schema.load(lock_path)
    entry = lock["hosts"].get(host)
    if entry is None:
        raise UserError(f"{lock_path}: hosts.{host}: no entry; a host is rebuilt to what the lock recorded")
    roles_dir = paths.project_root() / "roles"
    store = build.site_store(inv, roles_dir)
    problems = gate.problems(lock, inv, [host], store)
    if problems:
        raise UserError(f"{lock_path}: " + "; ".join(problems))
    baseline = rundir.current(rundir.home(inv.hosts_file.parent) / "baseline")  # a bad pointer: named here
    venv, cache = build.node_paths(inv, roles_dir)
    common = ["-i", str(path)]
    vault = site.vault_password_file(vault_password_file, path)
    secrets = ["--vault-password-file", vault] if vault else []
    started = datetime.now(UTC)
    steps: list[dict[str, Any]] = []
    snapshot = f"{lock_path.name} (snapshot {lock['packages_snapshot']})"
    if reinstall:
        if not yes:
            click.confirm(f"Erase {host}'s disk, install it from the site, then converge it from {snapshot}?",
                          abort=True)  # fmt: skip
        # provision refuses a server that answers as another machine, before its disk is touched.
        reinstalled = ["provision", host, "--yes", *common, *secrets]
        if other_machine:
            reinstalled.append("--other-machine")
        steps.append(run_step("rebuild", "reinstall", reinstalled))
    found, differs = None, []
    if not steps or steps[-1]["exit_code"] == 0:
        read = read_states(inv, [host], venv, cache, verify=[], rehash=False)[host]
        found = read.value if read.reachable else None
        differs = judge.identity_problems(entry, found) if found else []
        problem = ""
        if not read.reachable:
            problem = (f"{host}: cannot rebuild: {read.error} (a re-imaged host has a new ssh host key: "
                       "verify it out of band and enroll it in known_hosts first)")  # fmt: skip
        elif differs and not other_machine:
            problem = (f"{host}: not the machine the lock recorded: {'; '.join(differs)} "
                       "(--other-machine after replacing hardware on purpose)")  # fmt: skip
        if problem and not steps:
            raise UserError(problem)  # nothing done yet
        if problem:
            steps.append({"step": "identity", "exit_code": 1, "seconds": 0, "result": {"error": problem}})
    if not reinstall and not yes:
        click.confirm(f"Converge {host} from {snapshot}?", abort=True)
    if judge.outcome(steps) or not steps:
        steps.append(run_step("rebuild", "converge", ["apply", "site", *common, "--limit", host, *secrets]))
    if steps[-1]["exit_code"] == 0:
        steps.append(run_step("rebuild", "drift", ["drift", *common, "--limit", host]))
        measured = host in inv.hosts_in("gpu_nodes") or host in inv.hosts_in("inference")
        if measured and baseline is not None:
            # Health, NVIDIA's diagnostics and the endpoints' sweep, judged against the host's last
            # accepted results: the same GPUs by serial, TTFT and tokens/s within the tolerances.
            compared = ["acceptance", *common, "--limit", host, "--baseline", "auto", *secrets]
            steps.append(run_step("rebuild", "acceptance", compared))
        else:
            if host in inv.hosts_in("gpu_nodes"):
                steps.append(run_step("rebuild", "health", ["verify", "health", *common, "--limit", host]))
            if host in inv.hosts_in("inference"):
                load = ["verify", "load", *common, "--limit", host, *secrets]
                steps.append(run_step("rebuild", "load", load))
    record = {
        "host": host,
        "lock": str(lock_path),
        "packages_snapshot": lock["packages_snapshot"],
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "identity": {
            "machine": found.machine if found else None,
            "gpus_before": found.gpus if found else None,
            "differs": differs,
        },
        "baseline": baseline.name if baseline else None,
        "steps": steps,
        "ok": judge.outcome(steps),
    }
    out = inv.hosts_file.parent / "rebuilds" / f"{host}-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    atomic.write_text(out, json.dumps(record, indent=2) + "\n")
    if as_json:
        click.echo(json.dumps(record, indent=2))
    else:
        echo_table(steps)
        click.echo(f"{host}: {'rebuilt' if record['ok'] else 'NOT rebuilt'}; record: {out}")
    if not record["ok"]:
        raise SystemExit(1)
