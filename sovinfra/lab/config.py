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
# Debian releases a lab host can run (codename -> NVIDIA's repository name for it); the first is the
# default, and the one the lab's container image and the control node share.
RELEASES = {"bookworm": "debian12", "trixie": "debian13"}
DEFAULT_RELEASE = "bookworm"
# Each release's system Python (what a node makes venvs with: engine wheels are built for it).
RELEASE_PYTHON = {"bookworm": "3.11", "trixie": "3.13"}
# `lab up --release`: every host one release, or `mixed` (the mirror host and odd GPU nodes the default,
# even GPU nodes the newest): one site converging both at once.
RELEASE_CHOICES = (*RELEASES, "mixed")
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


def base_recipe(release: str) -> str:
    """What a cached base was built from: a changed recipe rebuilds it (bump the number to force one)."""
    return f"2:{release}:{','.join(BASE_PACKAGES)}"


MAX_NODES = 32


@dataclass(frozen=True)
class HostPlan:
    name: str
    address: str
    groups: tuple[str, ...]
    release: str = DEFAULT_RELEASE

    @property
    def machine(self) -> str:
        return MACHINE_PREFIX + self.name


def subnet() -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(os.environ.get("SOVINFRA_LAB_SUBNET", "10.213.7.0/24"))


def gateway() -> str:
    return str(subnet().network_address + 1)


def host_release(release: str, gpu_index: int) -> str:
    """The release of GPU node `gpu_index` (0 for the mirror host) in a lab of `release`."""
    if release != "mixed":
        return release
    return list(RELEASES)[-1] if gpu_index and gpu_index % 2 == 0 else DEFAULT_RELEASE


def plan_hosts(nodes: int, release: str = DEFAULT_RELEASE) -> list[HostPlan]:
    """One mirror host (which also watches the site and is its endpoint) plus `nodes` GPU nodes, with stable
    addresses."""
    net = subnet()
    mirror_groups = ("model_mirror", "monitoring", "inference_gateway")
    hosts = [HostPlan("mirror1", str(net.network_address + 10), mirror_groups, host_release(release, 0))]
    hosts += [
        HostPlan(
            f"gpu{i}", str(net.network_address + 10 + i), ("gpu_nodes", "inference"), host_release(release, i)
        )
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
