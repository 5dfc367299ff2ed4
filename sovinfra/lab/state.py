"""The lab's state file: what `up` made, so `down` can remove it even after a crash."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sovinfra import atomic, paths
from sovinfra.lab import config


@dataclass
class HostState:
    name: str
    address: str
    groups: list[str]
    pid: int = 0
    release: str = config.DEFAULT_RELEASE


@dataclass
class VmState:
    """A VM of the Vagrant lab (`sovinfra lab vm`): logs in as `user` with `key`, becomes root."""

    name: str
    address: str
    groups: list[str]
    user: str
    key: str
    kernel: str = ""  # the kernel it boots (the box's)


@dataclass
class LabState:
    subnet: str = ""
    gateway: str = ""
    apt_proxy_pid: int = 0
    # No apt proxy: hosts install from the site's package snapshot on the mirror host only.
    air_gapped: bool = False
    # What `lab up --release` asked for (a release, or `mixed`); each host's own is in its entry.
    release: str = config.DEFAULT_RELEASE
    # The stand-in NVIDIA repositories' server (air-gapped labs: what `mirror packages sync` mirrors).
    nvidia_upstream_pid: int = 0
    hosts: dict[str, HostState] = field(default_factory=dict)
    # The project checkout that brought the lab up (its inventory/lab/ is the lab's inventory).
    owner: str = ""
    vms: dict[str, VmState] = field(default_factory=dict)
    # `lab vm up` started libvirt's daemons itself (no systemd): `lab vm down` stops them.
    libvirt_started: bool = False


def state_file() -> Path:
    return paths.lab_dir() / "state.json"


def load() -> LabState:
    path = state_file()
    if not path.exists():
        return LabState()
    raw = json.loads(path.read_text())
    hosts = {name: HostState(**h) for name, h in raw.get("hosts", {}).items()}
    return LabState(
        subnet=raw.get("subnet", ""),
        gateway=raw.get("gateway", ""),
        apt_proxy_pid=raw.get("apt_proxy_pid", 0),
        air_gapped=raw.get("air_gapped", False),
        release=raw.get("release", config.DEFAULT_RELEASE),
        nvidia_upstream_pid=raw.get("nvidia_upstream_pid", 0),
        hosts=hosts,
        owner=raw.get("owner", ""),
        vms={name: VmState(**v) for name, v in raw.get("vms", {}).items()},
        libvirt_started=raw.get("libvirt_started", False),
    )


def save(state: LabState) -> None:
    atomic.write_text(state_file(), json.dumps(asdict(state), indent=2))


def remove() -> None:
    state_file().unlink(missing_ok=True)
