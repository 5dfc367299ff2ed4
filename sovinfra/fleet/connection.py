"""Ansible connection variables -> pyinfra ssh host data, and one parallel read over many hosts."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sovinfra.inventory.model import Inventory, host_vars


def ssh_data(variables: dict[str, Any], name: str) -> dict[str, Any]:
    """pyinfra's ssh_* data from Ansible's ansible_* variables; host keys are always checked."""
    data: dict[str, Any] = {
        "ssh_hostname": variables.get("ansible_host", name),
        "ssh_strict_host_key_checking": "yes",
        "ssh_connect_retries": 0,
    }
    if "ansible_port" in variables:
        data["ssh_port"] = int(variables["ansible_port"])
    if "ansible_user" in variables:
        data["ssh_user"] = variables["ansible_user"]
    if "ansible_ssh_private_key_file" in variables:
        data["ssh_key"] = variables["ansible_ssh_private_key_file"]
    for arg in shlex.split(str(variables.get("ansible_ssh_common_args", ""))):
        if arg.startswith("UserKnownHostsFile="):
            data["ssh_known_hosts_file"] = arg.split("=", 1)[1]
    return data


@dataclass
class HostRead:
    host: str
    reachable: bool
    value: Any = None
    error: str = ""


def read_all(
    inv: Inventory, hosts: list[str], fact: type, parallel: int = 64, kwargs: dict[str, Any] | None = None
) -> dict[str, HostRead]:
    """Run one pyinfra fact (with the same arguments) on every host in parallel; a host that cannot be
    reached says so."""
    from pyinfra.api import Config, State
    from pyinfra.api import Inventory as PyinfraInventory
    from pyinfra.api.connect import connect_all, disconnect_all
    from pyinfra.api.exceptions import PyinfraError
    from pyinfra.api.facts import get_facts

    # pyinfra remembers known_hosts per process: a host enrolled since (re-imaged, rebuilt) must be met
    # with its new key, so the file is read afresh for every read.
    from pyinfra.connectors.sshuserclient import client as ssh_client

    getattr(ssh_client.get_host_keys, "cache", {}).clear()
    names = [(h, ssh_data(host_vars(inv, h), h)) for h in hosts]
    state = State(
        PyinfraInventory((names, {})),
        Config(PARALLEL=max(1, min(parallel, len(hosts))), CONNECT_TIMEOUT=5, FAIL_PERCENT=100),
    )
    results = {h: HostRead(h, reachable=False, error="could not connect over ssh") for h in hosts}
    try:
        connect_all(state)
    except PyinfraError:
        return results  # no host answered
    try:
        facts = get_facts(state, fact, kwargs=kwargs)
    finally:
        disconnect_all(state)
    for py_host, value in facts.items():
        results[py_host.name] = HostRead(py_host.name, reachable=True, value=value)
    return results


Reader = Callable[[Inventory, list[str], type], dict[str, HostRead]]
