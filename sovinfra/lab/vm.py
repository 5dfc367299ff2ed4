"""The Vagrant lab: GPU nodes as libvirt VMs with their own kernels, on the container lab's network
beside its mirror host, in its inventory, provisioned by the top-level Vagrantfile (`lab vm up|down|status`).

What Vagrant needs here and no Vagrantfile can do is done first: libvirt's daemons (started directly where
PID 1 is not systemd) and its storage pool, the box (built offline, `box`), each VM's identity (host key,
name, address: handed in through fw_cfg, the key pinned before the VM exists), and `vagrant.json`, which
the Vagrantfile reads. Everything is checked before anything is made; `down` removes it all, also after a
crash (by libvirt's names for the VMs).
"""

from __future__ import annotations

import ipaddress
import json
import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sovinfra import atomic, paths
from sovinfra.commands import run
from sovinfra.errors import UserError
from sovinfra.lab import box, config, state

Log = Callable[[str], None]

PREFIX = "vm"
MAX_VMS = 8
ADDRESS_OFFSET = 100  # vm1 is .101 of the lab's subnet, clear of the containers (.10 and up)
DEFAULT_CPUS = 2
DEFAULT_MEMORY_MIB = 2048
HEADROOM_MIB = 1024  # left to this machine beyond the VMs' memory
# GPU nodes for the kernel side; the containers serve the lab's model (an engine under TCG is only slow).
GROUPS = ("gpu_nodes",)
LIBVIRT_URI = "qemu:///system"
POOL = "default"
POOL_DIR = Path("/var/lib/libvirt/images")
# Under TCG a VM boots in about 30 s; give it room on a busy machine.
BOOT_TIMEOUT_S = 600
KNOWN_HOSTS = Path("/etc/ssh/ssh_known_hosts")
DOMAIN_PREFIX = "sovinfra-lab-"  # libvirt's names for the VMs (the Vagrantfile's default_prefix)
MARK = "# sovinfra lab vm"
QEMU_USER = "libvirt-qemu"  # Debian's libvirt runs QEMU as this user


@dataclass(frozen=True)
class VmPlan:
    name: str
    address: str
    mac: str


def plan(nodes: int, subnet: str) -> list[VmPlan]:
    """The VMs' names, lab addresses and fixed MACs (pure)."""
    net = ipaddress.ip_network(subnet)
    return [
        VmPlan(f"{PREFIX}{i}", str(net.network_address + ADDRESS_OFFSET + i), f"52:54:00:5f:00:{i:02x}")
        for i in range(1, nodes + 1)
    ]


def settings_file() -> Path:
    return paths.lab_dir() / "vagrant.json"


def vm_dir(name: str) -> Path:
    return paths.lab_dir() / "vms" / name


def driver() -> str:
    """kvm where this machine can run guests on hardware virtualisation, else qemu (TCG, emulated)."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    hardware = any(flag in flags.split() for flag in ("vmx", "svm"))
    return "kvm" if hardware and os.access("/dev/kvm", os.R_OK | os.W_OK) else "qemu"


def _mem_available_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


def problems(nodes: int, cpus: int, memory_mib: int, lab: state.LabState) -> list[str]:
    """Everything that stops `vm up`, found before anything is made."""
    found = []
    if os.geteuid() != 0:
        found.append("the Vagrant lab needs root (libvirt's system daemon, the lab's bridge)")
    if not 1 <= nodes <= MAX_VMS:
        found.append(f"--nodes must be between 1 and {MAX_VMS}, got {nodes}")
    if cpus < 1 or memory_mib < 512:
        found.append(f"--cpus must be at least 1 and --memory at least 512 MiB, got {cpus} and {memory_mib}")
    for tool, package in (("vagrant", "vagrant"), ("qemu-system-x86_64", "qemu-system-x86"),
                          ("libvirtd", "libvirt-daemon-system"), ("virsh", "libvirt-clients")):  # fmt: skip
        if not shutil.which(tool):
            found.append(
                f"{tool} is not installed (Debian package {package}; `bash scripts/setup` installs it)"
            )
    if shutil.which("vagrant") and "vagrant-libvirt" not in run(["vagrant", "plugin", "list"], check=False):
        found.append("Vagrant's libvirt provider is not installed (Debian package vagrant-libvirt)")
    if not lab.subnet or not any("model_mirror" in h.groups for h in lab.hosts.values()):
        found.append("no lab is up: VMs join its network and mirror host (`sovinfra lab up --air-gapped`)")
    wanted, available = nodes * memory_mib + HEADROOM_MIB, _mem_available_mib()
    if wanted > available:
        found.append(
            f"{nodes} VM(s) of {memory_mib} MiB need {wanted} MiB with headroom; {available} MiB available"
        )
    return found


DAEMONS = ("libvirtd", "virtlogd")  # each writes /run/<name>.pid


def _kvm_device_as_udev_sets_it() -> None:
    """/dev/kvm root:kvm 0660, as Debian's udev rules leave it; where no udev ran it stays root-only, and
    libvirt then finds every cached QEMU capability stale ("KVM was enabled when probing, but it is not
    available now") and probes QEMU again on each lookup: about 48 s per domain define here, 0.05 s after."""
    import grp
    import stat

    device = Path("/dev/kvm")
    try:
        kvm_gid = grp.getgrnam("kvm").gr_gid
        st = device.stat()
    except (KeyError, OSError):
        return
    if stat.S_ISCHR(st.st_mode) and st.st_uid == 0 and st.st_gid == 0 and stat.S_IMODE(st.st_mode) == 0o600:
        os.chown(device, 0, kvm_gid)
        device.chmod(0o660)


def ensure_libvirt(log: Log) -> bool:
    """libvirt's daemons answering (started here where systemd does not run them) and its storage pool;
    whether this started the daemons."""
    _kvm_device_as_udev_sets_it()
    started = False
    if subprocess.run(["virsh", "-c", LIBVIRT_URI, "version"], capture_output=True).returncode != 0:
        started = True
        log("starting libvirt's daemons (virtlogd, libvirtd) ...")
        run(["virtlogd", "-d"], check=False)
        run(["libvirtd", "-d"])
        deadline = time.monotonic() + 30
        while subprocess.run(["virsh", "-c", LIBVIRT_URI, "version"], capture_output=True).returncode:
            if time.monotonic() > deadline:
                raise UserError("libvirtd did not answer within 30 s (see /var/log/libvirt/libvirtd.log)")
            time.sleep(0.5)
    pools = run(["virsh", "-c", LIBVIRT_URI, "pool-list", "--all", "--name"]).split()
    if POOL not in pools:
        POOL_DIR.mkdir(parents=True, exist_ok=True)
        run(["virsh", "-c", LIBVIRT_URI, "pool-define-as", POOL, "dir", "--target", str(POOL_DIR)])
    if POOL not in run(["virsh", "-c", LIBVIRT_URI, "pool-list", "--name"]).split():
        run(["virsh", "-c", LIBVIRT_URI, "pool-start", POOL])
    return started


def stop_libvirt() -> None:
    """Stop the daemons `ensure_libvirt` started (by their pid files; libvirtd first)."""
    from sovinfra.lab import processes

    for daemon in DAEMONS:
        pid_file = Path(f"/run/{daemon}.pid")
        if pid_file.exists():
            processes.stop(int(pid_file.read_text().strip() or 0), daemon)


def network_file(address: str, prefixlen: int) -> str:
    # No gateway, as for the container hosts: the VM reaches the lab's subnet and nothing else.
    return f"[Match]\nName=eth0\n\n[Network]\nAddress={address}/{prefixlen}\nLinkLocalAddressing=no\n"


def identity(vm: VmPlan, prefixlen: int) -> str:
    """The VM's fw_cfg items (host key, hostname, network) on disk, readable by QEMU; its public host key."""
    where = vm_dir(vm.name)
    where.mkdir(parents=True, exist_ok=True)
    key = where / "ssh_host_ed25519_key"
    if not key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{vm.name}", "-f", str(key)])
    (where / "hostname").write_text(vm.name + "\n")
    (where / "network").write_text(network_file(vm.address, prefixlen))
    # QEMU runs as libvirt's own user: it alone (and root) may read the private key.
    if _user_exists(QEMU_USER):
        shutil.chown(key, user=QEMU_USER)
    key.chmod(0o400)
    return " ".join(key.with_suffix(".pub").read_text().split()[:2])


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _mark(path: Path, entries: list[str]) -> None:
    """Replace the marked block of a known_hosts file with `entries` (other lines kept, as they are)."""
    now = path.read_text().splitlines() if path.exists() else []
    wanted = [line for line in now if line and not line.endswith(MARK)] + [f"{e} {MARK}" for e in entries]
    if wanted != now:
        atomic.write_text(path, "".join(line + "\n" for line in wanted))


def pin(entries: list[str]) -> None:
    """The VMs' host keys in the system's known hosts (Vagrant's own ssh reads no other), in one marked
    block that `down` removes; the lab's known_hosts file gets them from its state."""
    _mark(KNOWN_HOSTS, entries)


def settings(
    vms: list[VmPlan], release: str, cpus: int, memory_mib: int, source: box.Source = box.ARCHIVE
) -> dict:
    root = paths.project_root()
    return {
        "box": box.name(release, source),
        "user_key": str(box.user_key(release, source)),
        "bridge": config.BRIDGE,
        "driver": driver(),
        "cpus": cpus,
        "memory_mib": memory_mib,
        "boot_timeout_s": BOOT_TIMEOUT_S,
        "fw_cfg": box.FW_CFG,
        "domain_prefix": DOMAIN_PREFIX,
        "inventory": str(paths.lab_inventory_dir()),
        "playbook": str(root / "playbooks" / "site.yml"),
        "vault_password_file": str(paths.lab_dir() / "vault-password"),
        "extra_vars": {},
        "nodes": [
            {
                "name": vm.name,
                "address": vm.address,
                "mac": vm.mac,
                "console": str(vm_dir(vm.name) / "console.log"),
                "fw_cfg": {item: str(vm_dir(vm.name) / item) for item in box.IDENTITY},
            }
            for vm in vms
        ],
    }


def vagrant(args: list[str], log: Log) -> int:
    """Run vagrant in the project root (where the Vagrantfile is), its output streamed to the log."""
    env = {**os.environ, "VAGRANT_DEFAULT_PROVIDER": "libvirt", "LIBVIRT_DEFAULT_URI": LIBVIRT_URI,
           "SOVINFRA_LAB_DIR": str(paths.lab_dir())}  # fmt: skip
    proc = subprocess.Popen(["vagrant", *args], cwd=paths.project_root(), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        if not line.startswith("Progress:"):  # the box's upload, a line per percent
            log(line.rstrip())
    return proc.wait()


def pinned_lines(lab: state.LabState) -> list[str]:
    """known_hosts lines of the lab's VMs (their keys, made by `identity`)."""
    lines = []
    for vm in lab.vms.values():
        pub = vm_dir(vm.name) / "ssh_host_ed25519_key.pub"
        if pub.exists():
            lines.append(f"{vm.address} {' '.join(pub.read_text().split()[:2])}")
    return lines


def _write_known_hosts(lab: state.LabState) -> None:
    """The lab's own known_hosts: its containers' lines as they are, the VMs' from their keys."""
    _mark(paths.lab_dir() / "known_hosts", pinned_lines(lab))


def domain(name: str) -> str:
    """libvirt's name for a VM (the Vagrantfile's default_prefix): stable, `down` finds it after a crash."""
    return f"{DOMAIN_PREFIX}{name}"


def box_source(store: Path | None, air_gapped: bool, log: Log) -> box.Source:
    """The site's package snapshot for an air-gapped lab whose store publishes one that holds the box's
    packages; Debian's archive otherwise (said, with why)."""
    if air_gapped and store is not None:
        found, why = box.site_snapshot(store)
        if found:
            return found
        log(f"the box comes from Debian's archive: {why}")
    return box.ARCHIVE


def up(
    nodes: int, cpus: int, memory_mib: int, provision: bool, log: Log, store: Path | None = None
) -> list[VmPlan]:
    """`store`: the mirror's store, whose package snapshot the box is built from where it can be."""
    from sovinfra.lab import inventory as lab_inventory
    from sovinfra.lab import manager

    lab = state.load()
    found = problems(nodes, cpus, memory_mib, lab)
    if found:
        raise UserError("cannot bring the VMs up:\n  " + "\n  ".join(found))
    if ensure_libvirt(log):
        lab.libvirt_started = True
        state.save(lab)
    release = config.DEFAULT_RELEASE
    source = box_source(store, lab.air_gapped, log)
    box.ensure(release, log, source)
    vms = plan(nodes, lab.subnet)
    extra = sorted(set(lab.vms) - {vm.name for vm in vms})
    if extra and settings_file().exists():
        vagrant(["destroy", "-f", *extra], log)
    prefixlen = ipaddress.ip_network(lab.subnet).prefixlen
    keys = {vm.name: identity(vm, prefixlen) for vm in vms}
    lab.vms = {
        vm.name: state.VmState(
            vm.name,
            vm.address,
            list(GROUPS),
            box.USER,
            str(box.user_key(release, source)),
            box.kernel_release(release, source),
        )
        for vm in vms
    }
    state.save(lab)  # recorded before anything runs: `down` removes it whatever happens next
    pin([f"{vm.address} {keys[vm.name]}" for vm in vms])
    _write_known_hosts(lab)
    atomic.write_text(settings_file(), json.dumps(settings(vms, release, cpus, memory_mib, source), indent=2))
    lab_inventory.write(lab, paths.lab_inventory_dir(), paths.lab_dir(), manager.standin_repos())
    code = vagrant(["up", "--provider=libvirt", *([] if provision else ["--no-provision"])], log)
    if code:
        raise UserError(
            f"`vagrant up` failed (exit {code}); consoles in {paths.lab_dir() / 'vms'}/*/console.log"
        )
    return vms


def leftover_domains() -> list[str]:
    """libvirt domains of the Vagrant lab, by name."""
    if not shutil.which("virsh"):
        return []
    out = subprocess.run(
        ["virsh", "-c", LIBVIRT_URI, "list", "--all", "--name"], capture_output=True, text=True
    )
    return [d for d in out.stdout.split() if d.startswith(DOMAIN_PREFIX)]


def down(log: Log) -> list[str]:
    """Every VM, volume and pinned key the Vagrant lab made (by libvirt's names too, after a crash);
    returns what could not be removed. The box stays cached, like the lab's base image."""
    from sovinfra.lab import inventory as lab_inventory
    from sovinfra.lab import manager

    lab = state.load()
    if settings_file().exists() and leftover_domains():
        vagrant(["destroy", "-f"], log)
    for name in leftover_domains():
        subprocess.run(["virsh", "-c", LIBVIRT_URI, "destroy", name], capture_output=True)
        subprocess.run(
            ["virsh", "-c", LIBVIRT_URI, "undefine", name, "--remove-all-storage"], capture_output=True
        )
        log(f"{name} removed")
    for volume in _box_volumes():
        subprocess.run(
            ["virsh", "-c", LIBVIRT_URI, "vol-delete", volume, "--pool", POOL], capture_output=True
        )
    if lab.libvirt_started:
        stop_libvirt()
        lab.libvirt_started = False
    pin([])
    lab.vms = {}
    _write_known_hosts(lab)
    shutil.rmtree(paths.lab_dir() / "vms", ignore_errors=True)
    settings_file().unlink(missing_ok=True)
    shutil.rmtree(paths.project_root() / ".vagrant", ignore_errors=True)
    if lab.subnet:
        state.save(lab)
        lab_inventory.write(lab, paths.lab_inventory_dir(), paths.lab_dir(), manager.standin_repos())
    return leftover_domains()


def _box_volumes() -> list[str]:
    """The boxes' images vagrant-libvirt uploaded into the pool (sovinfra-VAGRANTSLASH-<box>_...)."""
    if not shutil.which("virsh"):
        return []
    out = subprocess.run(["virsh", "-c", LIBVIRT_URI, "vol-list", POOL], capture_output=True, text=True)
    names = [line.split()[0] for line in out.stdout.splitlines() if line.strip()]  # Name  Path, a table
    return [n for n in names if n.startswith("sovinfra-VAGRANTSLASH-")]


@dataclass
class VmStatus:
    name: str
    address: str
    state: str
    ssh: bool


def status() -> list[VmStatus]:
    from sovinfra.lab import hosts

    result = []
    for vm in state.load().vms.values():
        out = subprocess.run(["virsh", "-c", LIBVIRT_URI, "domstate", domain(vm.name)], capture_output=True,
                             text=True)  # fmt: skip
        running = out.stdout.strip() if out.returncode == 0 else "absent"
        result.append(
            VmStatus(vm.name, vm.address, running, running == "running" and hosts.ssh_answers(vm.address))
        )
    return result
