"""Judging an inventory's variables against the role specs (pure: data in, problems out)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from sovinfra.inventory import formats
from sovinfra.inventory.model import SITE_GROUPS, Inventory, VarSource, VaultText
from sovinfra.inventory.specs import VarSpec

# Keys of a spec that ArgumentSpecValidator understands; description and friends are documentation.
_SPEC_KEYS = {"type", "elements", "choices", "options", "required", "default", "no_log", "aliases"}


@dataclass(frozen=True)
class Problem:
    file: Path
    key: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.message}"


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _clean(spec: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in spec.items() if k in _SPEC_KEYS}
    if isinstance(out.get("options"), dict):
        out["options"] = {k: _clean(v or {}) for k, v in out["options"].items()}
    return out


def check_value(spec: VarSpec, value: Any) -> list[str]:
    validator = ArgumentSpecValidator({spec.name: _clean(spec.spec)})
    result = validator.validate({spec.name: value})
    return [str(e) for e in result.error_messages]


def _check_connection(source: VarSource, key: str, value: Any) -> str | None:
    if key == "ansible_host" and not _is_template(value):
        if not isinstance(value, str):
            return "must be a host name or an IP address (a string)"
        return formats.host_problem(value)
    bad_port = isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535
    if key == "ansible_port" and not _is_template(value) and bad_port:
        return "must be a port number 1-65535"
    return None


# Variables whose format the spec's type cannot express: the parser the code uses on them judges them.
FORMATS: dict[str, Callable[[object], str]] = {
    "bmc_address": formats.bmc_url,
    "netboot_mac": formats.mac,
    "netboot_disk": formats.disk,
}


def _check_format(key: str, value: Any) -> str | None:
    parse = FORMATS.get(key)
    if parse is None or _is_template(value) or isinstance(value, VaultText):
        return None
    try:
        parse(value)
    except ValueError as exc:
        return str(exc)
    return None


# Variables that name another inventory host, and the group that host must be in.
HOST_REFERENCES = {"model_cache_via": "mirror_cache"}


def _host_references(inv: Inventory) -> list[Problem]:
    problems = []
    for source in inv.sources:
        for key, group in HOST_REFERENCES.items():
            value = source.values.get(key)
            if not value or _is_template(value):
                continue
            members = inv.hosts_in(group)
            if value not in members:
                found = ", ".join(sorted(members)) or "none"
                problems.append(
                    Problem(
                        source.file,
                        key,
                        f"names {value}, which is not a host of group {group} ({found}) ({source.scope})",
                    )
                )
    return problems


def check(inv: Inventory, specs: dict[str, VarSpec], roles: list[str]) -> list[Problem]:
    problems: list[Problem] = []
    prefixes = tuple(f"{role}_" for role in roles)
    for source in inv.sources:
        for key, value in source.values.items():
            connection = _check_connection(source, key, value) or _check_format(key, value)
            if connection:
                problems.append(Problem(source.file, key, f"{connection} ({source.scope})"))
            if key in specs:
                if _is_template(value) or isinstance(value, VaultText):
                    continue  # known only at run time: Ansible renders or decrypts it, the role judges it
                for msg in check_value(specs[key], value):
                    problems.append(
                        Problem(source.file, key, f"{msg} (role {specs[key].role}, {source.scope})")
                    )
            elif key.startswith(prefixes):
                role = next(r for r in roles if key.startswith(f"{r}_"))
                problems.append(
                    Problem(source.file, key, f"role {role} has no such variable (typo?) ({source.scope})")
                )
    problems += _host_references(inv)
    if not inv.hosts:
        problems.append(Problem(inv.hosts_file, "all", "the inventory has no hosts"))
    for group in SITE_GROUPS:
        if group not in inv.groups:
            problems.append(
                Problem(inv.hosts_file, group, f"group {group} is missing (may be empty)", severity="warning")
            )
    return problems
