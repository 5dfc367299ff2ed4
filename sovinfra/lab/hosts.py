"""One lab host: its overlay upper layer, its pinned ssh host key, its systemd-nspawn process."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from sovinfra import paths
from sovinfra.commands import run
from sovinfra.errors import UserError
from sovinfra.lab import cgroups, config, processes
from sovinfra.lab.config import HostPlan

# Container runtimes' state: overlayfs cannot use the host's overlay root as its upper dir, so these are
# plain directories of this machine bound into the host.
RUNTIME_DIRS = ("/var/lib/containerd", "/var/lib/docker", "/var/lib/containers")
# Lab only, at boot, before any runtime: the cgroup controllers writable (nspawn mounts them read-only)
# and this host's own cgroup (cgroups.nest) bound over each, so runc's cgroups stay inside the lab's tree.
# systemd's own hierarchies (name=systemd, unified) are nspawn's business and left alone.
CGROUP_SCRIPT = f"""#!/bin/sh
set -e
# cgroup v2 (one hierarchy, namespaced by nspawn): nothing to do.
[ "$(stat -f -c %T /sys/fs/cgroup)" = tmpfs ] || exit 0
h=$(cat /etc/hostname)
for d in /sys/fs/cgroup/*/; do
  c=$(basename "$d")
  case $c in systemd|unified) continue ;; esac
  [ -L "${{d%/}}" ] && continue
  mount -o remount,bind,rw "$d"
  if [ -d "${{d}}{config.CGROUP_NAME}/$h" ]; then mount --bind "${{d}}{config.CGROUP_NAME}/$h" "$d"; fi
done
"""
CGROUP_UNIT = """[Unit]
Description=sovinfra lab: this host's own writable cgroups, for container runtimes
DefaultDependencies=no
Before=containerd.service docker.service podman.service sysinit.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/sovinfra-lab-cgroups

[Install]
WantedBy=sysinit.target
"""


def host_dir(name: str) -> Path:
    return paths.lab_dir() / "hosts" / name


def prepare(plan: HostPlan, prefixlen: int, authorized_key: str) -> str:
    """Write the host's own files into its upper layer once; return its public host key line."""
    upper = host_dir(plan.name) / "upper"
    etc = upper / "etc"
    key = etc / "ssh/ssh_host_ed25519_key"
    if not key.exists():
        (etc / "ssh").mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", plan.name, "-f", str(key)])
    # Each host its own machine-id: the board uuid, which nspawn also hands PID 1 as container_uuid on
    # every boot (it prefers the container's machine-id to --uuid), so the board reads the same after a
    # restart or a wipe; without it every host shares the base image's id.
    machine_id = etc / "machine-id"
    if not machine_id.exists():
        machine_id.write_text(config.board_uuid(plan.name).replace("-", "") + "\n")
    (etc / "hostname").write_text(plan.name + "\n")
    # Without the 127.0.1.1 line, fact gathering stalls 10+ s on DNS.
    (etc / "hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {plan.name}\n")
    network = etc / "systemd/network"
    network.mkdir(parents=True, exist_ok=True)
    # No Gateway: the host can reach the lab subnet and nothing else.
    (network / "10-lab.network").write_text(
        f"[Match]\nName=host0\n\n[Network]\nAddress={plan.address}/{prefixlen}\nLinkLocalAddressing=no\n"
    )
    script = upper / "usr/local/sbin/sovinfra-lab-cgroups"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(CGROUP_SCRIPT)
    script.chmod(0o755)
    units = etc / "systemd/system"
    (units / "sysinit.target.wants").mkdir(parents=True, exist_ok=True)
    (units / "sovinfra-lab-cgroups.service").write_text(CGROUP_UNIT)
    wants = units / "sysinit.target.wants/sovinfra-lab-cgroups.service"
    if not wants.is_symlink():
        wants.symlink_to("../sovinfra-lab-cgroups.service")
    ssh_dir = upper / "root/.ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ssh_dir.chmod(0o700)
    auth = ssh_dir / "authorized_keys"
    auth.write_text(authorized_key.strip() + "\n")
    auth.chmod(0o600)
    return " ".join(key.with_suffix(".pub").read_text().split()[:2])


def start(plan: HostPlan, base: Path) -> int:
    upper = host_dir(plan.name) / "upper"
    log = (host_dir(plan.name) / "console.log").open("ab")
    binds = []
    for path in RUNTIME_DIRS:
        source = host_dir(plan.name) / "runtime" / path.strip("/").replace("/", "-")
        source.mkdir(parents=True, exist_ok=True)
        binds.append(f"--bind={source}:{path}")
    cgroups.nest(plan.name)
    cmd = [
        "systemd-nspawn",
        "-D", str(base),
        f"--overlay={base}:{upper}:/",
        "--boot",
        f"--machine={plan.machine}",
        # The host's board identity (its container_uuid): stable for its name, kept by `lab wipe`.
        f"--uuid={config.board_uuid(plan.name)}",
        f"--network-bridge={config.BRIDGE}",
        # No system bus on a host without systemd: nspawn must neither register nor make a scope.
        "--register=no",
        "--keep-unit",
        "--console=read-only",
        "--system-call-filter=@keyring",
        *binds,
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=lambda: cgroups.enter(plan.name),
    )
    return proc.pid


def ssh_answers(address: str, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, 22), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def wait_ssh(plan: HostPlan, pid: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not processes.alive(pid, plan.machine):
            raise UserError(
                f"lab host {plan.name} exited while booting; see {host_dir(plan.name) / 'console.log'}"
            )
        if ssh_answers(plan.address, 0.5):
            return
        time.sleep(0.3)
    raise UserError(f"lab host {plan.name} ({plan.address}) did not answer ssh within {timeout:.0f} s")


def stop(name: str, pid: int) -> None:
    processes.stop(pid, config.MACHINE_PREFIX + name)
    cgroups.remove(name)


def remove_files(name: str) -> None:
    shutil.rmtree(host_dir(name), ignore_errors=True)


def stray_pids() -> list[int]:
    """nspawn processes of the lab that no state file knows of (after a crash)."""
    return processes.find(
        lambda args: (
            "systemd-nspawn" in args[0]
            and any(a.startswith(f"--machine={config.MACHINE_PREFIX}") for a in args)
        )
    )
