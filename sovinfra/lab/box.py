"""A Vagrant box for the libvirt provider, built here from Debian's packages alone (no Vagrant Cloud, here
or at an air-gapped site), cached by its recipe.

Its packages come from the site's package snapshot when the mirror's store has one published that holds
them (`Source`: mmdebstrap from the published tree, its index checked with the site key), else from
Debian's archive; a box is cached per release, recipe and source.

The box is a real machine: Debian's kernel and initramfs, GRUB in the disk's MBR, systemd, sshd. Its
`vagrant` user logs in with a key made for this box (never Vagrant's public insecure key). No host key is
baked in: each VM is handed its own at boot through QEMU's firmware config (`fw_cfg`, readable by root in
the guest only), made and pinned on the control node before the VM exists, so the first ssh connection
already checks it (`FW_CFG`), with the VM's name and lab address.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

from sovinfra import paths
from sovinfra.commands import run
from sovinfra.errors import UserError
from sovinfra.lab import config
from sovinfra.mirror import os_tree
from sovinfra.mirror.os_tree import Source

PACKAGES = (
    "linux-image-amd64",
    "grub-pc-bin",
    "grub2-common",
    "systemd-sysv",
    "udev",
    "kmod",
    "dbus",
    "openssh-server",
    "sudo",
    "python3",
    "python3-apt",
    "iproute2",
    "ca-certificates",
    "qemu-guest-agent",  # how Vagrant learns a VM's address (no DHCP on the lab's network)
)
DISK_GB = 32  # sparse; preflight wants 20 GiB free on /
USER = "vagrant"
# What makes a VM itself, handed in at boot through QEMU's firmware config (-fw_cfg name=<this>/<item>,
# file=...): its ssh host key (private half), its hostname, its network (a systemd-networkd file).
FW_CFG = "opt/sovinfra"
IDENTITY = ("ssh_host_ed25519_key", "hostname", "network")
# Bump to rebuild every cached box (the recipe hash changes). 2: mmdebstrap (apt's choice of versions).
VERSION = 2

# At boot, before the network and sshd. Without a host key sshd has none and nobody logs in (better than
# a key nobody pinned).
IDENTITY_SCRIPT = f"""#!/bin/sh
set -e
src=/sys/firmware/qemu_fw_cfg/by_name/{FW_CFG}
if [ ! -r "$src/ssh_host_ed25519_key/raw" ]; then
  echo "sovinfra: no ssh host key in fw_cfg ({FW_CFG})" >&2
  exit 1
fi
umask 077
cat "$src/ssh_host_ed25519_key/raw" > /etc/ssh/ssh_host_ed25519_key.new
ssh-keygen -y -f /etc/ssh/ssh_host_ed25519_key.new > /etc/ssh/ssh_host_ed25519_key.pub
mv /etc/ssh/ssh_host_ed25519_key.new /etc/ssh/ssh_host_ed25519_key
umask 022
if [ -r "$src/hostname/raw" ]; then
  cat "$src/hostname/raw" > /etc/hostname
  hostname -F /etc/hostname
  printf '127.0.0.1 localhost\n127.0.1.1 %s\n' "$(cat /etc/hostname)" > /etc/hosts
fi
if [ -r "$src/network/raw" ]; then cat "$src/network/raw" > /etc/systemd/network/10-sovinfra.network; fi
"""
IDENTITY_UNIT = """[Unit]
Description=sovinfra: this VM's host key, name and address, from the hypervisor's firmware config
DefaultDependencies=no
After=systemd-modules-load.service local-fs.target
Before=ssh.service systemd-networkd.service network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/sovinfra-identity

[Install]
WantedBy=sysinit.target
"""
GRUB_CFG = """set timeout=1
menuentry "Debian" {
  search --no-floppy --label --set=root root
  linux /vmlinuz root=LABEL=root ro net.ifnames=0 console=ttyS0,115200n8 console=tty0
  initrd /initrd.img
}
"""
BOX_VAGRANTFILE = """Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.disk_bus = "virtio"
  end
end
"""


ARCHIVE = Source(config.DEBIAN_MIRROR)


def site_snapshot(store: Path) -> tuple[Source | None, str]:
    """The store's current published package snapshot as the box's source when it holds every package the
    box installs; else None and why (said where the box is built from Debian's archive instead)."""
    return os_tree.snapshot_source(store, PACKAGES)


def recipe(release: str, source: Source = ARCHIVE) -> str:
    files = [IDENTITY_SCRIPT, IDENTITY_UNIT, GRUB_CFG, BOX_VAGRANTFILE]
    doc = {"v": VERSION, "release": release, "packages": PACKAGES, "disk_gb": DISK_GB, "mirror": source.url,
           "files": files}  # fmt: skip
    if source.suite:  # a snapshot: its id and the key that checks it
        keyring = Path(source.keyring).read_bytes() if source.keyring else b""
        doc |= {"suite": source.suite, "keyring": hashlib.sha256(keyring).hexdigest()}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:12]


def name(release: str, source: Source = ARCHIVE) -> str:
    """The box's name in Vagrant: one per release, recipe and source, so a changed recipe is a new box."""
    return f"sovinfra/{release}-{recipe(release, source)}"


def box_dir(release: str, source: Source = ARCHIVE) -> Path:
    return paths.lab_cache_dir() / "boxes" / f"{release}-{recipe(release, source)}"


def user_key(release: str, source: Source = ARCHIVE) -> Path:
    """The private key the box's vagrant user logs in with (made with the box, 0600, root's)."""
    return box_dir(release, source) / "vagrant_ed25519"


def kernel_release(release: str, source: Source = ARCHIVE) -> str:
    """The kernel the box boots (what DKMS builds NVIDIA's module for: its headers go in the snapshot)."""
    return (box_dir(release, source) / "kernel-release").read_text().strip()


def box_file(release: str, source: Source = ARCHIVE) -> Path:
    return box_dir(release, source) / "sovinfra.box"


def _added(release: str, source: Source) -> bool:
    # Away from the project's Vagrantfile, which only loads once `lab vm up` wrote its settings.
    out = run(["vagrant", "box", "list", "--machine-readable"], check=False, cwd=box_dir(release, source))
    wanted = [name(release, source)]
    return any(line.split(",")[3:4] == wanted for line in out.splitlines() if ",box-name," in line)


def ensure(
    release: str = config.DEFAULT_RELEASE, log: Callable[[str], None] = print, source: Source = ARCHIVE
) -> str:
    """The box for `release` from `source`, built once per recipe and added to Vagrant; returns its name."""
    if release not in config.RELEASES:
        raise UserError(f"--release: {release!r} is not one of {', '.join(config.RELEASES)}")
    target = box_dir(release, source)
    if not box_file(release, source).exists():
        build(release, target, log, source)
    if not _added(release, source):
        log(f"adding box {name(release, source)} to Vagrant ...")
        archive = box_file(release, source)
        run(["vagrant", "box", "add", "--force", "--name", name(release, source), str(archive)], cwd=target)
    return name(release, source)


def build(release: str, target: Path, log: Callable[[str], None], source: Source = ARCHIVE) -> None:
    """mmdebstrap, a disk with GRUB, qcow2, the box archive: made aside, then renamed into place."""
    work = target.with_name(target.name + ".building")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    root = work / "rootfs"
    log(f"building Vagrant box {name(release, source)} from {source.describe(release)} (mmdebstrap, kernel, "
        "GRUB) ...")  # fmt: skip
    kernel = os_tree.bootstrap(release, root, source, PACKAGES)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"sovinfra box {release}", "-f",
         str(work / "vagrant_ed25519")])  # fmt: skip
    _configure(root, (work / "vagrant_ed25519.pub").read_text())
    (work / "kernel-release").write_text(kernel + "\n")
    raw = work / "disk.raw"
    _disk(root, raw)
    shutil.rmtree(root)
    run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(work / "box.img")])
    raw.unlink()
    (work / "metadata.json").write_text(json.dumps({"provider": "libvirt", "format": "qcow2",
                                                    "virtual_size": DISK_GB}))  # fmt: skip
    (work / "Vagrantfile").write_text(BOX_VAGRANTFILE)
    run(
        ["tar", "-C", str(work), "-cf", str(work / "sovinfra.box"), "metadata.json", "Vagrantfile", "box.img"]
    )
    (work / "box.img").unlink()
    shutil.rmtree(target, ignore_errors=True)
    work.rename(target)


def _configure(root: Path, authorized_key: str) -> None:
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/machine-id").write_text("")
    (root / "etc/hostname").write_text("localhost\n")
    (root / "etc/fstab").write_text("LABEL=root / ext4 errors=remount-ro 0 1\n")
    (root / "etc/modules-load.d/sovinfra-fw-cfg.conf").write_text("qemu_fw_cfg\n")
    (root / "etc/ssh/sshd_config.d/00-sovinfra.conf").write_text(
        "HostKey /etc/ssh/ssh_host_ed25519_key\nPasswordAuthentication no\nUseDNS no\n"
    )
    script = root / "usr/local/sbin/sovinfra-identity"
    script.write_text(IDENTITY_SCRIPT)
    script.chmod(0o755)
    (root / "etc/systemd/system/sovinfra-identity.service").write_text(IDENTITY_UNIT)
    run(["systemctl", f"--root={root}", "enable", "systemd-networkd.service", "ssh.service",
         "sovinfra-identity.service", "qemu-guest-agent.service"])  # fmt: skip
    run(["chroot", str(root), "useradd", "--create-home", "--shell", "/bin/bash", USER])
    ssh_dir = root / "home" / USER / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    (ssh_dir / "authorized_keys").write_text(authorized_key)
    (root / "etc/sudoers.d/vagrant").write_text(f"{USER} ALL=(ALL) NOPASSWD: ALL\n")
    (root / "etc/sudoers.d/vagrant").chmod(0o440)
    run(["chroot", str(root), "chown", "-R", f"{USER}:{USER}", f"/home/{USER}/.ssh"])
    (root / "boot/grub").mkdir(parents=True, exist_ok=True)
    (root / "boot/grub/grub.cfg").write_text(GRUB_CFG)
    run(["chroot", str(root), "apt-get", "clean"])


@contextlib.contextmanager
def _loop(raw: Path) -> Iterator[str]:
    device = run(["losetup", "--partscan", "--find", "--show", str(raw)]).strip()
    try:
        if not Path(f"{device}p1").exists():  # no partition scan in a container: add them by ioctl
            run(["partx", "--add", device])
        yield device
    finally:
        subprocess.run(["partx", "--delete", device], check=False, capture_output=True)
        subprocess.run(["losetup", "-d", device], check=False)


def _disk(root: Path, raw: Path) -> None:
    """One bootable MBR partition labelled root holding the tree, GRUB in the MBR gap."""
    with raw.open("wb") as fh:
        fh.truncate(DISK_GB * 1024**3)
    run(["sfdisk", "--quiet", str(raw)], input_text="label: dos\nstart=2048, type=83, bootable\n")
    mnt = raw.with_name("mnt")
    mnt.mkdir()
    with _loop(raw) as device:
        part = f"{device}p1"
        run(["mkfs.ext4", "-q", "-L", "root", part])
        run(["mount", part, str(mnt)])
        try:
            run(["cp", "-a", f"{root}/.", str(mnt)])
            with os_tree.system_mounts(mnt):
                run(
                    ["chroot", str(mnt), "grub-install", "--target=i386-pc", "--boot-directory=/boot", device]
                )
        finally:
            subprocess.run(["umount", str(mnt)], check=False)
    mnt.rmdir()
