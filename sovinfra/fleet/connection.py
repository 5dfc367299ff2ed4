"""One parallel read of a pyinfra fact over many hosts, reached as the inventory says (fleet.ssh_options)."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sovinfra.fleet import ssh_options
from sovinfra.inventory.model import Inventory


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
    from pyinfra.api import BaseStateCallback, Config, State
    from pyinfra.api import Inventory as PyinfraInventory
    from pyinfra.api.connect import connect_all, disconnect_all
    from pyinfra.api.exceptions import PyinfraError
    from pyinfra.api.facts import get_facts

    # pyinfra remembers known_hosts per process: a host enrolled since (re-imaged, rebuilt) must be met
    # with its new key, so the file is read afresh for every read.
    from pyinfra.connectors.sshuserclient import client as ssh_client

    getattr(ssh_client.get_host_keys, "cache", {}).clear()
    opts = {h: ssh_options.options(inv, h) for h in hosts}  # a bad jump host fails here, before any read
    errors: dict[str, str] = {}

    class Errors(BaseStateCallback):
        @staticmethod
        def host_connect_error(state: Any, host: Any, error: Exception) -> None:
            errors[host.name] = str(error.args[0] if error.args else error)  # ssh's own words

    with tempfile.TemporaryDirectory(prefix="sovinfra-ssh-") as private:
        names = [(h, ssh_options.pyinfra_data(o)) for h, o in opts.items()]
        config = ssh_options.jump_config(list(opts.values()))
        if config:  # pyinfra (paramiko) takes jump hosts from an ssh_config; one per read, never cached
            path = Path(private) / "ssh_config"
            path.write_text(config)
            for _, data in names:
                data["ssh_config_file"] = str(path)
        state = State(
            PyinfraInventory((names, {})),
            Config(PARALLEL=max(1, min(parallel, len(hosts))), CONNECT_TIMEOUT=5, FAIL_PERCENT=100),
        )
        state.add_callback_handler(Errors())
        with contextlib.suppress(PyinfraError):  # no host answered: each says why below
            connect_all(state)
        try:
            facts = get_facts(state, fact, kwargs=kwargs) if state.activated_hosts else {}
        finally:
            disconnect_all(state)
    unreached = {h: errors.get(h, "could not connect over ssh") for h in hosts}
    results = {h: HostRead(h, reachable=False, error=why) for h, why in unreached.items()}
    for py_host, value in facts.items():
        results[py_host.name] = HostRead(py_host.name, reachable=True, value=value)
    return results


Reader = Callable[[Inventory, list[str], type], dict[str, HostRead]]
