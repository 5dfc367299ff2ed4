"""`sovinfra provision HOST...`: servers with no OS (new, or a dead disk) installed from the site through
their BMCs, then converged and verified like every host.

Everything is checked before anything is touched (the servers' netboot and BMC keys, every BMC logged in
to). Then: each server's ssh host key made and pinned; the netboot host told to install them; each BMC
asked for one network boot and a power cycle; the netboot service's log watched, and the netboot host told
as soon as a server's installer has taken its files that it is installed (its next boot is from its disk,
whatever the BMC keeps, even while others still install); each server must answer ssh with its planted key
within the budget; then `apply site --limit` and `verify health`. A server that does not come back is
reported with the last stage the netboot service saw. Run it again after an interruption: every step
converges or reads.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from sovinfra import paths
from sovinfra.cli.options import other_machine_option, vault_password_option
from sovinfra.cli.steps import echo_table
from sovinfra.cli.steps import run as run_step
from sovinfra.errors import UserError
from sovinfra.inventory import formats, secrets, site
from sovinfra.inventory.model import Inventory, host_vars, var_file

POLL_S = 10


def health_argv(path: Path, gpu_hosts: list[str]) -> list[str]:
    """`verify health` of the provisioned GPU nodes (it reads the agents' reports: no vault)."""
    return ["verify", "health", "-i", str(path), "--limit", ",".join(gpu_hosts)]


def _clients(inv: Inventory, hosts: list[str]) -> list[Any]:
    """The servers as the netboot log names them; UserError for a server that cannot be installed."""
    from sovinfra.netboot import progress

    problems, found = [], []
    netboot = inv.hosts_in("netboot")
    if not netboot:
        problems.append(f"{inv.hosts_file}: netboot: no host in group netboot serves the network boot")
    for host in hosts:
        values = host_vars(inv, host)
        if host not in inv.hosts:
            problems.append(f"{inv.hosts_file}: no host {host!r}")
            continue
        if host in netboot:
            problems.append(f"{inv.hosts_file}: {host} serves the network boot; it cannot install itself")
        for key in ("netboot_mac", "netboot_disk"):
            if not values.get(key):
                problems.append(f"{var_file(inv, host, key)}: {key} (host {host}): not set")
        if values.get("netboot_mac"):
            address = str(values.get("netboot_address") or values.get("ansible_host") or host)
            found.append(progress.Client(host, formats.mac(values["netboot_mac"]), address))
    if problems:
        raise UserError(
            f"{inv.path}: {len(problems)} problem(s); nothing was touched:\n"
            + "\n".join(f"  {p}" for p in problems)
        )
    return found


def _not_the_servers(inv: Inventory, hosts: list[str], roles_dir: Path) -> list[str]:
    """Servers that answer ssh as another machine than the one known: a host key other than the pinned
    one, or another board or GPUs than the lock recorded (one read-only ssh round)."""
    from sovinfra.fleet.state import read_states
    from sovinfra.lock import build, schema
    from sovinfra.lock.rebuild import erase_problems
    from sovinfra.netboot import hostkeys

    def planted_pinned(host: str) -> bool:
        planted = hostkeys.made(roles_dir, host)
        return planted is not None and hostkeys.pinned(*_known_hosts(inv, host), planted)

    lock_path = schema.path_for(inv.hosts_file.parent)
    known = schema.load(lock_path)["hosts"] if lock_path.exists() else {}
    venv, cache = build.node_paths(inv, roles_dir)
    reads = read_states(inv, hosts, venv, cache, verify=[], rehash=False)
    return [p for h in hosts for p in erase_problems(h, reads[h], known.get(h), planted_pinned(h))]


def _known_hosts(inv: Inventory, host: str) -> tuple[Path, str, int]:
    from sovinfra.fleet import ssh_options

    opts = ssh_options.options(inv, host)
    return Path(opts.known_hosts or Path.home() / ".ssh" / "known_hosts").expanduser(), opts.host, opts.port


def _watch(
    inv: Inventory, clients: list[Any], since: str, deadline: float, release: Callable[[list[str]], None]
) -> dict[str, Any]:
    """Poll the netboot log until every installer has its server's files or the deadline; the progress.
    `release` is given the servers still installing each time more have taken theirs."""
    from sovinfra.fleet.connection import read_all
    from sovinfra.fleet.netboot import NetbootLog
    from sovinfra.netboot import progress

    said: dict[str, str] = {}
    told = sorted(c.host for c in clients)  # what the netboot host was told to install
    while True:
        reads = read_all(inv, sorted(inv.hosts_in("netboot")), NetbootLog, kwargs={"since": since})
        lines = [line for r in reads.values() if r.reachable for line in r.value or []]  # none yet: None
        seen = progress.read(lines, clients)
        for host, p in seen.items():
            if p.stage and said.get(host) != p.stage:
                click.echo(f"   {host}: {p.stage} ({p.seen[p.stage]})", err=True)
                said[host] = p.stage
        if all(p.stage == "files" for p in seen.values()) or time.monotonic() > deadline:
            return seen
        if (installing := progress.to_release(seen, told)) is not None:
            release(installing)
            told = installing
        time.sleep(POLL_S)


def _wait_for_ssh(inv: Inventory, hosts: list[str], deadline: float) -> dict[str, str]:
    """Each host's last ssh error ("" once it answered with its pinned key)."""
    from sovinfra.fleet.connection import read_all
    from sovinfra.fleet.netboot import Answers

    waiting = {h: "not tried" for h in hosts}
    while True:
        for host, read in read_all(inv, [h for h, e in waiting.items() if e], Answers).items():
            waiting[host] = "" if read.reachable else read.error or "no answer"
        if not any(waiting.values()) or time.monotonic() > deadline:
            return waiting
        time.sleep(POLL_S)


@click.command()
@click.argument("hosts", nargs=-1, required=True)
@click.option("-i", "--inventory", "inventory_path", help="inventory directory or hosts.yml")
@click.option("--yes", is_flag=True, help="do not ask before erasing the servers' disks")
@click.option("--budget-min", default=90, show_default=True, type=click.IntRange(5, 24 * 60),
              help="minutes for the install, until each server answers ssh")  # fmt: skip
@other_machine_option
@vault_password_option
@click.option("--json", "as_json", is_flag=True, help="print the record")
def provision(
    hosts: tuple[str, ...],
    inventory_path: str | None,
    yes: bool,
    budget_min: int,
    other_machine: bool,
    vault_password_file: str | None,
    as_json: bool,
) -> None:
    """Install HOSTS from the site's mirror through their BMCs, then converge and verify them."""
    from sovinfra.bmc import redfish, targets
    from sovinfra.netboot import hostkeys

    path = site.resolve(inventory_path)
    inv, _ = site.load_checked(path)
    chosen = sorted(set(hosts))
    clients = _clients(inv, chosen)
    roles_dir = paths.project_root() / "roles"
    vault_file = site.vault_password_file(vault_password_file, path)
    bmcs = targets.collect(inv, chosen, targets.role_defaults(roles_dir), secrets.vault_lib(vault_file))
    sessions = []
    for target in bmcs:  # every BMC answers and takes the login before any server is touched
        try:
            sessions.append(redfish.connect(target))
        except redfish.BmcError as exc:
            raise UserError(f"{exc}; nothing was touched") from exc
    # Erasing the wrong server is the one mistake provisioning cannot undo: one that answers as another
    # machine than the one known is left alone unless told.
    others = _not_the_servers(inv, chosen, roles_dir)
    if others and not other_machine:
        raise UserError(
            "not erased, nothing was touched (--other-machine to install them anyway):\n"
            + "\n".join(f"  {p}" for p in others)
        )
    if not yes:
        disks = ", ".join(f"{h} ({host_vars(inv, h)['netboot_disk']})" for h in chosen)
        click.confirm(f"Erase and install from the site: {disks}?", abort=True)

    common = ["-i", str(path), *(["--vault-password-file", vault_file] if vault_file else [])]  # for apply
    netboot_hosts = ",".join(sorted(inv.hosts_in("netboot")))
    started = datetime.now(UTC)
    deadline = time.monotonic() + budget_min * 60
    for host in chosen:  # the key the installer plants: the first answer is already known
        known, address, port = _known_hosts(inv, host)
        hostkeys.pin(known, address, port, hostkeys.ensure(roles_dir, host))

    def netboot(step: str, installing: list[str]) -> dict[str, Any]:
        """The netboot host told which servers to install (the others boot from their disks)."""
        extra = json.dumps({"netboot_install": installing})
        return run_step(
            "provision", step, ["apply", "netboot", *common, "--limit", netboot_hosts, "-e", extra]
        )

    def release(installing: list[str]) -> None:
        steps.append(netboot("netboot: some installed", installing))

    steps = [netboot("netboot: install", chosen)]
    seen: dict[str, Any] = {}
    unanswered: dict[str, str] = dict.fromkeys(chosen, "not installed")
    if steps[-1]["exit_code"] == 0:
        try:
            click.echo("== provision: network boot through the BMCs", err=True)
            for session in sessions:
                redfish.boot_once(session, "pxe")
                redfish.power(session, "cycle")
            since = started.strftime("%Y-%m-%d %H:%M:%S UTC")
            seen = _watch(inv, clients, since, deadline, release)
        except redfish.BmcError as exc:
            steps.append({"step": "bmc", "exit_code": 1, "seconds": 0, "result": {"error": str(exc)}})
        finally:  # whatever happened, the next boot is from the disk
            steps.append(netboot("netboot: installed", []))
        if seen and all(p.stage == "files" for p in seen.values()):
            click.echo("== provision: waiting for the installed servers to answer ssh", err=True)
            unanswered = _wait_for_ssh(inv, chosen, deadline)
    if not any(unanswered.values()):
        steps.append(
            run_step("provision", "converge", ["apply", "site", *common, "--limit", ",".join(chosen)])
        )
        gpu = [h for h in chosen if h in inv.hosts_in("gpu_nodes")]
        if steps[-1]["exit_code"] == 0 and gpu:
            steps.append(run_step("provision", "health", health_argv(path, gpu)))
    not_answering = {h: e for h, e in unanswered.items() if e}
    record = {
        "hosts": chosen,
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "netboot": {h: {"stage": p.stage, "seen": p.seen, "errors": p.errors} for h, p in seen.items()},
        "not_answering": not_answering,
        "steps": steps,
        "ok": not any(unanswered.values()) and all(s["exit_code"] == 0 for s in steps),
    }
    if as_json:
        click.echo(json.dumps(record, indent=2))
    else:
        echo_table(steps)
        for host, error in not_answering.items():
            last = seen[host].explain() if host in seen else f"{host}: never network-booted"
            click.echo(f"{host}: did not come back ({error}); last seen: {last}")
        click.echo(f"{', '.join(chosen)}: {'provisioned' if record['ok'] else 'NOT provisioned'}")
    if not record["ok"]:
        raise SystemExit(1)
