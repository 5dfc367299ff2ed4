"""A host's state: one script (host_state.sh) run on every host, parsed by one pure function, for pyinfra
(`sovinfra facts`, fleet/facts.py) and for the roles (the `sovinfra_host_state` filter: preflight, driver)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# The one reading of a host's state (facts, preflight and the driver role all run it).
SCRIPT = Path(__file__).with_name("host_state.sh")


def parse(lines: list[str]) -> dict[str, Any]:
    """KEY=VALUE lines of host_state.sh: disks and NVIDIA devices as lists, counts as ints (None when
    unreadable), the rest as strings; lines that are not KEY=VALUE are ignored."""
    facts: dict[str, Any] = {"disks": [], "nvidia_pci": []}
    for line in lines:
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "disk":
            name, size, rota = ([*value.split(":"), "", "", ""])[:3]
            facts["disks"].append(
                {"name": name, "bytes": int(size) if size.isdigit() else None, "rotational": rota == "1"}
            )
        elif key == "nvidia_pci":
            bus_id, _, device = value.rpartition(":")
            facts["nvidia_pci"].append({"bus_id": bus_id, "device_id": device})
        elif key in ("cpus", "mem_kib", "free_bytes"):
            facts[key] = int(value) if value.isdigit() else None
        else:
            facts[key] = value.strip()
    return facts
