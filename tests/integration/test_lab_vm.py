"""The Vagrant lab on a real VM (`sovinfra lab vm`, the top-level Vagrantfile): a GPU node with its own
kernel, booted from the box built here, its host key pinned before it existed, on the lab's network and in
its inventory, converged by Vagrant's ansible provisioner with the same playbook as every site. The driver
role's kernel side runs for real (the VM kernel's headers from the site snapshot, DKMS builds the module,
modprobe loads it, nouveau blacklisted in the initramfs); a second provision changes nothing; health
verifies; then everything the VM lab made is gone. Alone: `python3 -m pytest -m vm` (TCG: slow)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from sovinfra import paths
from sovinfra.cli import cli
from sovinfra.cli.mirror import default_store
from sovinfra.lab import box, config, nvidia_repo, vm
from sovinfra.lab import state as lab_state

pytestmark = [pytest.mark.lab, pytest.mark.vm]

VM = "vm1"
RECAP = re.compile(rf"^{VM}\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def vagrant(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VAGRANT_DEFAULT_PROVIDER": "libvirt", "SOVINFRA_LAB_DIR": str(paths.lab_dir())}
    return subprocess.run(
        ["vagrant", *args], cwd=paths.project_root(), env=env, capture_output=True, text=True
    )


def ssh_argv(known_hosts: Path) -> list[str]:
    entry = lab_state.load().vms[VM]
    return [
        "ssh", "-n", "-F", "/dev/null", "-o", "BatchMode=yes", "-i", entry.key,
        # Only the given file: the system's also pins the VM's key (for Vagrant's own ssh).
        "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=yes",
        f"{entry.user}@{entry.address}",
    ]  # fmt: skip


def on_vm(command: str) -> str:
    argv = [*ssh_argv(paths.lab_dir() / "known_hosts"), command]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def vm1(lab_inventory: str, converged: dict) -> Iterator[str]:
    code, out = invoke("lab", "vm", "up", "--nodes", "1", "--no-provision", "--json")
    try:
        assert code == 0, out[-3000:]
        # The box was built from the site's package snapshot the lab converged from (checked with the site
        # key), not from Debian's archive.
        found, why = box.site_snapshot(default_store())
        assert found, why
        assert json.loads(vm.settings_file().read_text())["box"] == box.name(config.DEFAULT_RELEASE, found)
        # The VM's kernel is not this machine's: its headers go into the site snapshot, which the mirror
        # host then publishes.
        code, out = invoke("mirror", "packages", "sync")
        assert code == 0, out[-3000:]
        code, out = invoke("apply", "mirror", "-i", lab_inventory, "--limit", "mirror1")
        assert code == 0, out[-3000:]
        yield VM
    finally:
        code, out = invoke("lab", "vm", "down", "--json")
        assert code == 0 and json.loads(out[out.index("{") :])["clean"], out[-3000:]
    # Nothing of the VM lab is left: no domain, no box volume, no pinned key, not in the inventory.
    assert vm.leftover_domains() == []
    # (read on disk: `down` also stopped the libvirt daemons it started)
    assert not [p.name for p in vm.POOL_DIR.iterdir() if p.name.startswith("sovinfra")]
    assert vm.MARK not in (vm.KNOWN_HOSTS.read_text() if vm.KNOWN_HOSTS.exists() else "")
    assert VM not in (Path(lab_inventory) / "hosts.yml").read_text()


def test_a_vm_of_its_own_kernel_answers_with_the_key_pinned_before_it_existed(
    vm1: str, tmp_path: Path
) -> None:
    name, kernel, address = on_vm("hostname; uname -r; ip -4 -o addr show eth0").split("\n", 2)
    assert name == VM and kernel == lab_state.load().vms[VM].kernel != os.uname().release
    assert f"inet {lab_state.load().vms[VM].address}/" in address
    # Its host key is the one pinned before it booted; any other is refused (an impostor at its address).
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    wrong = tmp_path / "known_hosts"
    wrong.write_text(
        f"{lab_state.load().vms[VM].address} {' '.join(other.with_suffix('.pub').read_text().split()[:2])}\n"
    )
    refused = subprocess.run([*ssh_argv(wrong), "true"], capture_output=True, text=True)
    assert refused.returncode != 0 and "Host key verification failed" in refused.stderr, refused.stderr


def test_vagrant_provisions_the_site_and_the_driver_module_is_built_and_loaded(vm1: str) -> None:
    first = vagrant("provision", VM)
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-2000:]
    recap = RECAP.search(first.stdout)
    assert recap and int(recap[2]) > 0 and recap[4] == "0", first.stdout[-3000:]
    # DKMS built NVIDIA's (stand-in) module for the VM's kernel, and it is loaded at the pinned version.
    version = nvidia_repo.DRIVER_VERSIONS[0]
    assert on_vm("cat /sys/module/nvidia/version").strip() == version
    assert f"Kernel Module for x86_64  {version}" in on_vm("cat /proc/driver/nvidia/version")
    assert re.search(rf"nvidia/{re.escape(version)}, .*: installed", on_vm("sudo dkms status")), on_vm(
        "sudo dkms status"
    )
    # nouveau is blacklisted in the initramfs the VM boots.
    assert "blacklist-nouveau.conf" in on_vm("lsinitramfs /boot/initrd.img-$(uname -r)")
    again = vagrant("provision", VM)
    assert again.returncode == 0, again.stdout[-6000:]
    recap = RECAP.search(again.stdout)
    assert recap and recap[2] == "0" and recap[4] == "0", again.stdout[-6000:]
    code, out = invoke("verify", "health", "--limit", VM, "--json")
    assert code == 0 and not json.loads(out[out.index("{") :])["failed_hosts"], out[-3000:]


def apply_vm(lab_inventory: str, playbook: str, *args: str) -> dict:
    code, out = invoke("apply", playbook, "-i", lab_inventory, "--limit", VM, "--json", *args)
    run = json.loads(out[out.index("{") :])
    assert code == 0, run["failures"]
    return run["hosts"][VM]


def test_a_driver_upgrade_reboots_the_vm_once_only_when_allowed(vm1: str, lab_inventory: str) -> None:
    """The kernel side of a driver upgrade: the new version pinned and in the site snapshot, the packages
    and its DKMS module installed while the old module stays loaded -> "reboot required" and nothing
    rebooted; with nvidia_driver_reboot the node reboots once and comes back with the new module; again:
    nothing changes, no reboot."""
    old, new = nvidia_repo.DRIVER_VERSIONS
    pinned = Path(lab_inventory) / "host_vars" / f"{VM}.yml"
    pinned.parent.mkdir(exist_ok=True)
    driver = ("--tags", "nvidia_driver")
    try:
        pinned.write_text(f"nvidia_driver_version: '{new}'\n")
        # The new snapshot holds both drivers; the mirror publishes it and the VM takes it as its source.
        code, out = invoke("mirror", "packages", "sync", "-i", lab_inventory)
        assert code == 0, out[-3000:]
        code, out = invoke("apply", "mirror", "-i", lab_inventory, "--limit", "mirror1")
        assert code == 0, out[-3000:]
        apply_vm(lab_inventory, "base")
        boot = on_vm("cat /proc/sys/kernel/random/boot_id")

        installed = apply_vm(lab_inventory, "gpu_nodes", *driver)
        assert installed["changed"] > 0
        assert on_vm("cat /sys/module/nvidia/version").strip() == old  # still the running one
        assert on_vm("/sbin/modinfo -F version nvidia").strip() == new
        assert f"NVIDIA driver {new}" in on_vm("cat /run/reboot-required")
        assert on_vm("cat /proc/sys/kernel/random/boot_id") == boot

        pinned.write_text(f"nvidia_driver_version: '{new}'\nnvidia_driver_reboot: true\n")
        rebooted = apply_vm(lab_inventory, "gpu_nodes", *driver)
        assert rebooted["changed"] >= 1
        assert on_vm("cat /proc/sys/kernel/random/boot_id") != boot
        assert on_vm("cat /sys/module/nvidia/version").strip() == new
        assert f"Kernel Module for x86_64  {new}" in on_vm("cat /proc/driver/nvidia/version")
        assert on_vm("test -e /run/reboot-required && echo yes || echo no").strip() == "no"
        boot = on_vm("cat /proc/sys/kernel/random/boot_id")

        again = apply_vm(lab_inventory, "gpu_nodes", *driver)
        assert again["changed"] == 0
        assert on_vm("cat /proc/sys/kernel/random/boot_id") == boot
    finally:
        pinned.unlink(missing_ok=True)
