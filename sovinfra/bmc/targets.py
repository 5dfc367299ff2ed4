"""The inventory's BMCs as targets (pure but for reading whether a CA file exists): every problem with
every selected host is found before any BMC is contacted."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sovinfra.errors import UserError
from sovinfra.inventory import formats, secrets
from sovinfra.inventory.model import Inventory, host_vars, var_file


@dataclass(frozen=True)
class BmcTarget:
    host: str
    url: str  # https://HOST[:PORT]
    user: str
    password: str = field(repr=False)
    system_id: str  # "" = the only system the BMC lists
    ca_file: str  # "" = the system trust store
    timeout_s: int
    firmware: str  # "bios", "uefi" or "" (leave the BMC's boot mode as it is)


def role_defaults(roles_dir: Path) -> dict[str, Any]:
    """What a host that sets nothing gets: the bmc role's defaults, and the netboot role's firmware mode
    (the mode the BMC is asked to boot the server in)."""
    from sovinfra.inventory import defaults

    netboot = defaults.role_defaults(roles_dir, "netboot")
    return {**defaults.role_defaults(roles_dir, "bmc"), "netboot_firmware": netboot["netboot_firmware"]}


def with_bmc(inv: Inventory, hosts: list[str]) -> list[str]:
    """The hosts whose inventory names a BMC."""
    return [h for h in hosts if host_vars(inv, h).get("bmc_address")]


def collect(inv: Inventory, hosts: list[str], defaults: dict[str, Any], vault: Any) -> list[BmcTarget]:
    """Targets for `hosts`, or one UserError listing every missing or malformed key (file and key named)."""
    problems: list[str] = []
    targets: list[BmcTarget] = []
    for host in hosts:
        own = host_vars(inv, host)
        values = {**defaults, **own}

        def where(key: str, host: str = host) -> str:
            return f"{var_file(inv, host, key)}: {key} (host {host})"

        found: dict[str, str] = {}
        try:
            found["url"] = formats.bmc_url(values.get("bmc_address"))
        except ValueError as exc:
            problems.append(f"{where('bmc_address')}: {exc}")
        for key in ("bmc_user", "bmc_password"):
            value = values.get(key)
            if value in (None, ""):
                problems.append(f"{where(key)}: not set")
                continue
            try:
                found[key] = secrets.reveal(inv, host, values, value, where(key), vault)
            except UserError as exc:
                problems.append(str(exc))
        protocol = values.get("bmc_protocol") or "redfish"
        if protocol != "redfish":
            problems.append(f"{where('bmc_protocol')}: {protocol!r} is not supported (redfish)")
        ca_file = str(values.get("bmc_ca_file") or "")
        if ca_file:
            path = Path(ca_file)
            if not path.is_absolute():  # relative to the inventory file that names it
                path = var_file(inv, host, "bmc_ca_file").parent / path
            if not path.is_file():
                problems.append(f"{where('bmc_ca_file')}: {path} does not exist")
            ca_file = str(path)
        firmware = str(values.get("netboot_firmware") or "")
        if firmware not in ("", "bios", "uefi"):
            problems.append(f"{where('netboot_firmware')}: {firmware!r} is not bios or uefi")
        timeout = values.get("bmc_timeout_s", 30)
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
            problems.append(f"{where('bmc_timeout_s')}: must be a positive number of seconds")
            timeout = 30
        if "url" in found and "bmc_user" in found and "bmc_password" in found:
            targets.append(
                BmcTarget(
                    host=host,
                    url=found["url"],
                    user=found["bmc_user"],
                    password=found["bmc_password"],
                    system_id=str(values.get("bmc_system_id") or ""),
                    ca_file=ca_file,
                    timeout_s=timeout,
                    firmware=firmware,
                )
            )
    if problems:
        raise UserError(
            f"{inv.path}: {len(problems)} problem(s) with the BMCs; nothing was powered:\n"
            + "\n".join(f"  {p}" for p in problems)
        )
    return targets
