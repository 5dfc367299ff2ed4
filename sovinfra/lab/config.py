"""The lab's fixed layout: names, addresses and the base image recipe (pure data)."""

from __future__ import annotations

import ipaddress
import os
import uuid
from dataclasses import dataclass

from sovinfra import paths
from sovinfra.inventory import defaults

BRIDGE = "svlab0"
NFT_TABLE = "sovinfra_lab"
MACHINE_PREFIX = "svlab-"
CGROUP_NAME = "sovinfra-lab"
APT_PROXY_PORT = 3142
# The stand-in NVIDIA repositories, on this machine's loopback (the connected side).
NVIDIA_UPSTREAM_PORT = 3143
SUITE = "bookworm"
DEBIAN_MIRROR = os.environ.get("SOVINFRA_LAB_DEBIAN_MIRROR", "http://deb.debian.org/debian")
BASE_PACKAGES = (
    "openssh-server",
    "python3",
    "python3-apt",
    "systemd",
    "systemd-sysv",
    "dbus",
    "iproute2",
    "sudo",
    "ca-certificates",
)
# Bump when the base recipe changes so cached bases are rebuilt.
BASE_RECIPE = f"2:{SUITE}:{','.join(BASE_PACKAGES)}"
MAX_NODES = 32


@dataclass(frozen=True)
class HostPlan:
    name: str
    address: str
    groups: tuple[str, ...]

    @property
    def machine(self) -> str:
        return MACHINE_PREFIX + self.name


def subnet() -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(os.environ.get("SOVINFRA_LAB_SUBNET", "10.213.7.0/24"))


def gateway() -> str:
    return str(subnet().network_address + 1)


def plan_hosts(nodes: int) -> list[HostPlan]:
    """One mirror host (which also watches the site) plus `nodes` GPU nodes, with stable addresses."""
    net = subnet()
    hosts = [HostPlan("mirror1", str(net.network_address + 10), ("model_mirror", "monitoring"))]
    hosts += [
        HostPlan(f"gpu{i}", str(net.network_address + 10 + i), ("gpu_nodes", "inference"))
        for i in range(1, nodes + 1)
    ]
    return hosts


def board_uuid(name: str) -> str:
    """What a lab host reads as its board's uuid: fixed by its name, like a server's DMI product uuid."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sovinfra-lab:{name}"))


# Where a lab GPU node's simulated GPUs are described (health_agent installs it; `lab gpu` swaps it): the
# role's own constant, one source.
GPU_PROFILE = str(
    defaults.role_vars(paths.project_root() / "roles", "health_agent")["__health_agent_nvml_profile_path"]
)
