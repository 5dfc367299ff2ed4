"""The lab's Ansible inventory (inventory/lab/), rendered from its state (pure) and written atomically."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from sovinfra import atomic, paths
from sovinfra.acceptance import rundir
from sovinfra.inventory import defaults
from sovinfra.lab import box, config, nvidia_repo, nvidia_upstream
from sovinfra.lab.state import LabState


def hosts_document(state: LabState) -> dict[str, Any]:
    groups: dict[str, dict[str, Any]] = {"gpu_nodes": {}, "model_mirror": {}, "inference": {}}
    for host in state.hosts.values():
        for group in host.groups:
            groups.setdefault(group, {})[host.name] = {"ansible_host": host.address}
    for vm in state.vms.values():  # `sovinfra lab vm`: a user of the box's, root through sudo
        for group in vm.groups:
            groups.setdefault(group, {})[vm.name] = {
                "ansible_host": vm.address,
                "ansible_user": vm.user,
                "ansible_ssh_private_key_file": vm.key,
                "ansible_become": True,
                # Its own kernel (not this machine's, as the containers run): DKMS builds for it, and
                # the site's package snapshot holds its headers.
                "nvidia_driver_kernel_release": vm.kernel,
            }
    return {"all": {"children": {g: {"hosts": hosts or None} for g, hosts in groups.items()}}}


# The stand-in repositories that take the place of NVIDIA's upstreams of the same name.
STANDIN_UPSTREAMS = {
    "nvidia-cuda": nvidia_repo.CUDA_REPO,
    "nvidia-container-toolkit": nvidia_repo.CONTAINER_TOOLKIT_REPO,
}


def apt_upstreams(roles_dir: Path, repos: nvidia_repo.StandinRepos) -> list[dict[str, Any]]:
    """The site's default upstreams (model_mirror's), NVIDIA's replaced by the lab's stand-ins."""
    result = []
    for entry in defaults.role_defaults(roles_dir, "model_mirror")["model_mirror_apt_upstreams"]:
        sub = STANDIN_UPSTREAMS.get(entry["name"])
        if sub:
            entry = {
                "name": entry["name"],
                "url": nvidia_upstream.url(sub),
                "flat": True,
                "keyring": str(repos.root / sub / repos.key_file),
                "key_fingerprints": [repos.fingerprint],
            }
        result.append(entry)
    return result


def group_vars_all(
    state: LabState, lab_dir: Path, repos: nvidia_repo.StandinRepos, roles_dir: Path
) -> dict[str, Any]:
    mirror = next((h.address for h in state.hosts.values() if "model_mirror" in h.groups), None)
    if state.air_gapped:
        # Only the site's signed package snapshot (`sovinfra mirror packages sync`), served by the mirror
        # host; the snapshot also holds what the lab's base image was built with, what the Vagrant box is
        # built from (`lab vm up` builds it from the snapshot), and NVIDIA's packages mirrored from
        # the stand-ins as a site mirrors NVIDIA's repositories.
        apt: dict[str, Any] = {
            "site_apt_snapshot": "current",
            "model_mirror_apt_packages": sorted({*config.BASE_PACKAGES, *box.PACKAGES}),
            "model_mirror_apt_upstreams": apt_upstreams(roles_dir, repos),
            # Containers run this machine's kernel: the snapshot holds the stand-in headers for it.
            "nvidia_driver_kernel_release": os.uname().release,
        }
    else:
        apt = {
            "base_apt_proxy_url": f"http://{state.gateway}:{config.APT_PROXY_PORT}",
            "base_apt_proxy_direct_hosts": [mirror] if mirror else [],
            # NVIDIA's repositories as trees the mirror host publishes (no snapshot to hold them); the
            # roles' default URLs point at the mirror, only the lab's signing key differs.
            "model_mirror_package_trees": [
                {"name": sub, "src": str(repos.root / sub)}
                for sub in (*nvidia_repo.CUDA_REPOS, nvidia_repo.CONTAINER_TOOLKIT_REPO)
            ],
            "nvidia_repo_key_url": "{{ nvidia_repo_url }}/" + repos.key_file,
            "nvidia_repo_key_fingerprint": repos.fingerprint,
            "nvidia_container_toolkit_repo_key_url": "{{ nvidia_container_toolkit_repo_url }}/"
            + repos.key_file,
            "nvidia_container_toolkit_repo_key_fingerprint": repos.fingerprint,
        }
    return {
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(lab_dir / "id_ed25519"),
        # Host key checking stays on: the lab pins the keys it generated for its hosts.
        "ansible_ssh_common_args": (
            f"-o UserKnownHostsFile={lab_dir / 'known_hosts'} -o StrictHostKeyChecking=yes"
        ),
        "ansible_python_interpreter": "/usr/bin/python3",
        **apt,
        # The lab's own network (its gateway is the site's router) is inside the site for `sovinfra audit`.
        "site_networks": [state.subnet],
        # Time from the gateway, not the internet (containers share this machine's clock anyway).
        "base_ntp_servers": [state.gateway],
        # Lab hosts are containers: GPUs are simulated at the NVML boundary, none is on PCI.
        "preflight_gpu_pci_required": False,
        # ...and read through the NVML simulator, with a profile `sovinfra lab gpu` can swap.
        "health_agent_nvml_simulator": True,
        # The simulated GPUs are HGX 8-GPU boards, whose NVSwitches containers cannot see on PCI.
        "fabric_manager_enabled": True,
        # NVIDIA's bandwidth tests, packaged as a site packages them (the lab's stand-ins measure the links
        # the NVML simulator reports): acceptance runs them beside DCGM's diagnostics.
        "dcgm_bandwidth_tools": list(nvidia_repo.BANDWIDTH_TOOLS),
        # Every lab host's engine and the load client share this machine's cores: a run measured minutes
        # after another moves far more than a real GPU's does, so only a gross change fails acceptance.
        "acceptance_tolerances": {"ttft_p50_pct": 300, "tokens_per_s_pct": 70},
        "sovinfra_lab": True,
    }


def _write(path: Path, data: dict[str, Any]) -> None:
    header = "# Written by `sovinfra lab up`; rewritten on every run.\n"
    atomic.write_text(path, header + yaml.safe_dump(data, sort_keys=False))


def write(state: LabState, inventory_dir: Path, lab_dir: Path, repos: nvidia_repo.StandinRepos) -> None:
    roles_dir = paths.project_root() / "roles"
    _write(inventory_dir / "group_vars" / "all.yml", group_vars_all(state, lab_dir, repos, roles_dir))
    _write(inventory_dir / "hosts.yml", hosts_document(state))


def remove(inventory_dir: Path) -> None:
    written = (
        "hosts.yml",
        "group_vars/all.yml",
        "group_vars/inference.yml",  # `sovinfra lab model`
        "sovinfra.lock",  # `sovinfra lock` of this lab's site: gone with it
    )
    for path in (inventory_dir / name for name in written):
        path.unlink(missing_ok=True)
    shutil.rmtree(inventory_dir / "rebuilds", ignore_errors=True)  # `sovinfra rebuild` records
    shutil.rmtree(rundir.home(inventory_dir), ignore_errors=True)  # `sovinfra acceptance` runs, baseline
