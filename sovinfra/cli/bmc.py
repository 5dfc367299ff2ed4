"""`sovinfra bmc`: each server's BMC over Redfish: status, power, the next boot's device.

Every selected host's BMC keys are checked, and every BMC logged in to, before any is told to act: a
wrong password or an unreachable BMC powers nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import click

from sovinfra import paths
from sovinfra.cli.options import limit_option, vault_password_option
from sovinfra.errors import UserError
from sovinfra.inventory import secrets, site
from sovinfra.inventory.model import select_hosts

FAN_OUT = 16  # BMCs asked at once (each answers in about a second; a rack is 16-40 of them)


def _targets(inventory_path: str | None, limit: str | None, vault_password_file: str | None) -> list[Any]:
    from sovinfra.bmc import targets

    path = site.resolve(inventory_path)
    inv, _ = site.load_checked(path)
    hosts = select_hosts(inv, limit)
    if not limit:  # the whole inventory: the hosts that have a BMC; named hosts must all have one
        hosts = targets.with_bmc(inv, hosts)
        if not hosts:
            raise UserError(f"{inv.hosts_file}: bmc_address: no host of the inventory sets it")
    vault = secrets.vault_lib(site.vault_password_file(vault_password_file, path))
    role = targets.role_defaults(paths.project_root() / "roles")
    return targets.collect(inv, hosts, role, vault)


def _each(items: list[Any], call: Callable[[Any], Any]) -> list[tuple[Any, Any, str | None]]:
    """call(item) for every item, FAN_OUT at a time: (item, result, error line or None), in order."""
    from sovinfra.bmc.redfish import BmcError

    def one(item: Any) -> tuple[Any, Any, str | None]:
        try:
            return item, call(item), None
        except BmcError as exc:
            return item, None, str(exc)

    with ThreadPoolExecutor(max_workers=min(FAN_OUT, max(1, len(items)))) as pool:
        return list(pool.map(one, items))


def _sessions_or_nothing(chosen: list[Any], what: str) -> list[Any]:
    """A session with every BMC, or UserError naming each that failed (then nothing was done)."""
    from sovinfra.bmc import redfish

    logged_in = _each(chosen, redfish.connect)
    failed = [error for _, _, error in logged_in if error]
    if failed:
        raise UserError(
            f"{len(failed)} BMC(s) failed; nothing was {what}:\n" + "\n".join(f"  {e}" for e in failed)
        )
    return [session for _, session, _ in logged_in]


def _report(
    results: list[tuple[str, dict[str, Any]]], as_json: bool, line: Callable[[dict[str, Any]], str]
) -> None:
    if as_json:
        click.echo(json.dumps({"hosts": dict(results)}, indent=2))
    else:
        for host, result in results:
            click.echo(f"{host:<16} {result['error'] if result.get('error') else line(result)}")
    if any(r.get("error") for _, r in results):
        raise SystemExit(1)


def _refuse_unlimited(limit: str | None, yes: bool, count: int, what: str) -> None:
    if not limit and not yes and count > 1:
        raise UserError(f"would {what} {count} hosts' servers: name them with --limit, or pass --yes")


@click.group()
def bmc() -> None:
    """Servers' BMCs (Redfish): status, power, the next boot's device."""


def _common(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--json", "as_json", is_flag=True, help="machine-readable output")(fn)
    fn = vault_password_option(fn)
    fn = limit_option(fn)
    return click.option("-i", "--inventory", "inventory_path", help="inventory directory or hosts.yml")(fn)


def _status_line(r: dict[str, Any]) -> str:
    s = r["status"]
    mode = f" ({s['boot_mode']})" if s["boot_mode"] else ""
    done = f"{r['done']}; now " if r.get("done") else ""
    return (
        f"{done}power {s['power']}, boot {s['boot_target']} {s['boot_enabled']}{mode}, system {s['system']}"
    )


@bmc.command()
@_common
def status(
    inventory_path: str | None, limit: str | None, vault_password_file: str | None, as_json: bool
) -> None:
    """Power state and next boot as each BMC reports them (exit 1 when any BMC fails)."""
    from sovinfra.bmc import redfish

    chosen = _targets(inventory_path, limit, vault_password_file)
    results = _each(chosen, lambda t: redfish.status(redfish.connect(t)))
    _report([(t.host, {"error": e} if e else {"status": s}) for t, s, e in results], as_json, _status_line)


@bmc.command()
@click.argument("action", type=click.Choice(["on", "off", "cycle"]))
@click.option("--yes", is_flag=True, help="act on every host with a BMC when no --limit is given")
@_common
def power(
    action: str,
    yes: bool,
    inventory_path: str | None,
    limit: str | None,
    vault_password_file: str | None,
    as_json: bool,
) -> None:
    """Power servers on, off (at once, like holding the button), or cycle them (on when off)."""
    from sovinfra.bmc import redfish

    chosen = _targets(inventory_path, limit, vault_password_file)
    _refuse_unlimited(limit, yes, len(chosen), f"power {action}")
    sessions = _sessions_or_nothing(chosen, "powered")
    results = _each(sessions, lambda s: (redfish.power(s, action), redfish.status(s)))
    _report(
        [(s.target.host, {"error": e} if e else {"done": r[0], "status": r[1]}) for s, r, e in results],
        as_json,
        _status_line,
    )


@bmc.command("boot-once")
@click.argument("device", type=click.Choice(["pxe", "disk"]))
@click.option("--yes", is_flag=True, help="act on every host with a BMC when no --limit is given")
@_common
def boot_once(
    device: str,
    yes: bool,
    inventory_path: str | None,
    limit: str | None,
    vault_password_file: str | None,
    as_json: bool,
) -> None:
    """Boot from the network (pxe) or the disk at the next start only, in each host's netboot_firmware
    mode (bios or uefi) when the inventory sets one; read back from the BMC."""
    from sovinfra.bmc import redfish

    chosen = _targets(inventory_path, limit, vault_password_file)
    _refuse_unlimited(limit, yes, len(chosen), f"set the next boot of ({device})")
    sessions = _sessions_or_nothing(chosen, "changed")
    results = _each(sessions, lambda s: redfish.boot_once(s, device))
    _report(
        [
            (s.target.host, {"error": e} if e else {"done": f"next boot {device}", "status": r})
            for s, r, e in results
        ],
        as_json,
        _status_line,
    )
