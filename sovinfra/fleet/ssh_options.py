"""How the inventory says to reach a host over ssh, read once for every client (pure).

Ansible reads `ansible_host/port/user`, `ansible_ssh_private_key_file` and the ssh arguments
(`ansible_ssh_common_args`, `ansible_ssh_extra_args`); the pyinfra readers (`facts`, `verify health`,
`drift`, ...) and the paramiko tunnel of `verify load` take the same values from here, jump host included.
Host keys are always checked, whatever the arguments say.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

from sovinfra.errors import UserError
from sovinfra.inventory.model import Inventory, host_vars, var_file

_JUMP = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?P<host>\[[^\]]+\]|[^:\s]+)(?::(?P<port>\d+))?$")


@dataclass(frozen=True)
class Jump:
    host: str
    port: int
    user: str | None
    key_file: str | None
    known_hosts: str | None


@dataclass(frozen=True)
class SshOptions:
    host: str
    port: int
    user: str | None
    key_file: str | None
    known_hosts: str | None
    jump: Jump | None


def ssh_args(variables: dict[str, Any]) -> str:
    return f"{variables.get('ansible_ssh_common_args', '')} {variables.get('ansible_ssh_extra_args', '')}"


def proxy_jump(args: str) -> str | None:
    """The ProxyJump spec in ssh arguments (-J X, -o ProxyJump=X, or ProxyCommand ssh -W %h:%p X)."""
    words = shlex.split(args)
    for i, word in enumerate(words):
        option = word[2:] if word.startswith("-o") and len(word) > 2 else None
        if word == "-o" and i + 1 < len(words):
            option = words[i + 1]
        if word == "-J" and i + 1 < len(words):
            return words[i + 1]
        if option is None:
            continue
        name, _, value = option.partition("=")
        if name.strip().lower() == "proxyjump" and value.strip().lower() != "none":
            return value.strip()
        if name.strip().lower() == "proxycommand":
            command = shlex.split(value)
            if command[:1] == ["ssh"] and "-W" in command:
                return command[-1]
    return None


def known_hosts_file(args: str) -> str | None:
    words = shlex.split(args)
    for i, word in enumerate(words):
        option = words[i + 1] if word == "-o" and i + 1 < len(words) else word
        name, _, value = option.partition("=")
        if name.strip().lower() == "userknownhostsfile" and value.strip():
            return value.strip()
    return None


def _jump(inv: Inventory, host: str, variables: dict[str, Any], args: str) -> Jump | None:
    spec = proxy_jump(args)
    if spec is None:
        return None
    where = f"{var_file(inv, host, 'ansible_ssh_common_args')}: ansible_ssh_common_args (host {host})"
    if "," in spec:
        raise UserError(f"{where}: ProxyJump {spec!r}: only one jump host is supported")
    match = _JUMP.match(spec)
    if not match:
        raise UserError(f"{where}: ProxyJump {spec!r}: expected [user@]host[:port]")
    name = match["host"].strip("[]")
    user, port = match["user"], int(match["port"]) if match["port"] else None
    if name in inv.hosts:  # an inventory host: its own connection variables apply
        jv = host_vars(inv, name)
        name, port = str(jv.get("ansible_host", name)), port or int(jv.get("ansible_port", 22))
        user = user or jv.get("ansible_user")
    return Jump(
        host=name,
        port=port or 22,
        user=user or variables.get("ansible_user"),
        key_file=variables.get("ansible_ssh_private_key_file"),
        known_hosts=known_hosts_file(args),
    )


def options(inv: Inventory, host: str) -> SshOptions:
    """HOST's ssh settings from its inventory variables; a jump host it cannot use is a UserError naming
    the file and the key."""
    variables = host_vars(inv, host)
    args = ssh_args(variables)
    return SshOptions(
        host=str(variables.get("ansible_host", host)),
        port=int(variables.get("ansible_port", 22)),
        user=variables.get("ansible_user"),
        key_file=variables.get("ansible_ssh_private_key_file"),
        known_hosts=known_hosts_file(args),
        jump=_jump(inv, host, variables, args),
    )


def pyinfra_data(opts: SshOptions) -> dict[str, Any]:
    """pyinfra's ssh_* host data; host keys always checked, no retries (a read reports, it does not wait)."""
    data: dict[str, Any] = {
        "ssh_hostname": opts.host,
        "ssh_port": opts.port,
        "ssh_strict_host_key_checking": "yes",
        "ssh_connect_retries": 0,
    }
    if opts.user:
        data["ssh_user"] = opts.user
    if opts.key_file:
        data["ssh_key"] = opts.key_file
    if opts.known_hosts:
        data["ssh_known_hosts_file"] = opts.known_hosts
    return data


def jump_config(hosts: list[SshOptions]) -> str:
    """An ssh_config for pyinfra (paramiko) to reach hosts through their jump hosts: the target's section
    names the jump, the jump's section how to log in to it and check its key (paramiko would otherwise ask
    about an unknown key; here it is refused)."""
    jumps = {(o.jump.host, o.jump.port): o.jump for o in hosts if o.jump}
    lines: list[str] = []
    for jump in jumps.values():
        lines += [f"Host {jump.host}", f"  Port {jump.port}", "  StrictHostKeyChecking yes"]
        if jump.user:
            lines.append(f"  User {jump.user}")
        if jump.key_file:
            lines.append(f"  IdentityFile {jump.key_file}")
        lines.append(f"  UserKnownHostsFile {jump.known_hosts or '~/.ssh/known_hosts'}")
    for o in hosts:
        if o.jump:
            user = f"{o.jump.user}@" if o.jump.user else ""
            lines += [f"Host {o.host}", f"  ProxyJump {user}{o.jump.host}:{o.jump.port}"]
    return "\n".join(lines) + "\n" if lines else ""
