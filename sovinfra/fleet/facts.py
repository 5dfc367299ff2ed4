"""`sovinfra facts` as a pyinfra fact: the host-state script, its one parser (fleet/host_state.py)."""

from __future__ import annotations

from typing import Any

from pyinfra.api import FactBase

from sovinfra.fleet import host_state


class NodeFacts(FactBase):
    """OS, kernel, CPU, memory, disks, NVIDIA devices on PCI, Secure Boot and the driver's state."""

    def command(self) -> str:
        return "sh -c " + _quote(host_state.SCRIPT.read_text())

    def process(self, output: list[str]) -> dict[str, Any]:
        return host_state.parse(output)


def _quote(script: str) -> str:
    import shlex

    return shlex.quote(script)
