"""The OS a server gets at its network install: one image per package snapshot, made on the control node
from the snapshot alone, and the installer that writes it.

mmdebstrap makes a Debian tree from the site's snapshot (its Release checked with the site key); the tree
is a server ready for the site converge (Debian's kernel, GRUB for BIOS and UEFI, sshd taking its host
key from the install, DHCP on its NICs). The installer is the same tree's kernel with an initramfs made
by the tree's own initramfs-tools (every storage and NIC driver, busybox, the boot script
`installer/sovinfra`): it partitions the disk, unpacks the image after checking its sha256, plants the
server's own files and reboots. Nothing on the network is needed but the netboot host (TFTP), and only
ordinary packages: Debian's own network installer loads its components (udebs) from its mirror, and the
registries a site mirrors from do not always serve them (the one these machines reach does not).

  python -m sovinfra.netboot.image --store STORE --snapshot ID [--check]   -> JSON (the image's record)

Built once per snapshot and recipe under STORE/netboot/ID/ (made aside, renamed into place); `--check`
says whether it would be built and builds nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from sovinfra import paths
from sovinfra.commands import run
from sovinfra.errors import UserError
from sovinfra.inventory import defaults
from sovinfra.mirror import os_tree, store

VERSION = 1  # bump to rebuild every image (the recipe changes)
FILES = ("linux", "installer.img", "rootfs.tar.zst")  # what the netboot host serves, by these names
RECORD = "image.json"
INSTALLER = Path(__file__).with_name("installer")
CONFDIR = "etc/sovinfra-installer"  # the installer's initramfs-tools settings, inside the tree at build

# A server's network: DHCP on every wired NIC (the provisioning network gives each server its inventory
# address, from the netboot host or the network's own server).
# Its DHCP identity is its NIC's MAC (not systemd's DUID): what the netboot host and sites reserve by.
NETWORK = "[Match]\nType=ether\nName=en* eth*\n\n[Network]\nDHCP=yes\n\n[DHCPv4]\nClientIdentifier=mac\n"
SSHD = "HostKey /etc/ssh/ssh_host_ed25519_key\nPasswordAuthentication no\nUseDNS no\n"
# systemd-resolved answers on loopback only: no LLMNR or mDNS responder on the site's networks.
RESOLVED = "[Resolve]\nLLMNR=no\nMulticastDNS=no\n"


def packages(roles_dir: Path) -> list[str]:
    """What the image holds besides the base system (roles/netboot/vars: the snapshot holds them too)."""
    return [str(p) for p in defaults.role_vars(roles_dir, "netboot")["__netboot_image_packages"]]


def recipe(pkgs: list[str], source: os_tree.Source) -> str:
    doc: dict[str, Any] = {"v": VERSION, "packages": pkgs, "suite": source.suite, "network": NETWORK,
                           "sshd": SSHD, "resolved": RESOLVED}  # fmt: skip
    doc["installer"] = {p.name: p.read_text() for p in sorted(INSTALLER.iterdir())}
    if source.keyring:
        doc["keyring"] = hashlib.sha256(Path(source.keyring).read_bytes()).hexdigest()
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:12]


def image_dir(store: Path, snapshot: str) -> Path:
    return store / "netboot" / snapshot


def load(directory: Path) -> dict[str, Any] | None:
    """The image's record, or None when there is none (or it is unreadable: built again)."""
    try:
        record = json.loads((directory / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _configure(root: Path) -> None:
    """What every server's OS has before its own files are planted (host key, name, root's keys)."""
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # one image for every server: each gets the key sovinfra made for it
    (root / "etc/machine-id").write_text("")  # systemd makes one at first boot
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    (root / "etc/hostname").write_text("localhost\n")
    (root / "etc/ssh/sshd_config.d/00-sovinfra.conf").write_text(SSHD)
    (root / "etc/systemd/network/50-sovinfra-dhcp.network").write_text(NETWORK)
    (root / "etc/systemd/resolved.conf.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/systemd/resolved.conf.d/sovinfra.conf").write_text(RESOLVED)
    (root / "boot/grub").mkdir(parents=True, exist_ok=True)
    run(["systemctl", f"--root={root}", "enable", "systemd-networkd.service", "systemd-resolved.service",
         "ssh.service"])  # fmt: skip


def _installer(root: Path, kernel: str, out: Path) -> None:
    """The installer's initramfs, made by the tree's own initramfs-tools, then its settings removed."""
    conf = root / CONFDIR
    (conf / "scripts").mkdir(parents=True)
    (conf / "hooks").mkdir()
    shutil.copy(INSTALLER / "initramfs.conf", conf / "initramfs.conf")
    shutil.copy(INSTALLER / "modules", conf / "modules")
    shutil.copy(INSTALLER / "sovinfra", conf / "scripts" / "sovinfra")
    shutil.copy(INSTALLER / "hook", conf / "hooks" / "sovinfra-installer")
    (conf / "hooks" / "sovinfra-installer").chmod(0o755)
    with os_tree.system_mounts(root):
        run(["chroot", str(root), "mkinitramfs", "-d", f"/{CONFDIR}", "-o", "/tmp/installer.img", kernel])
    shutil.move(root / "tmp/installer.img", out)
    shutil.rmtree(conf)


def build(target: Path, source: os_tree.Source, pkgs: list[str], release: str = "") -> dict[str, Any]:
    """Make the image into `target` (aside first, then renamed); returns its record. `release` names an
    archive's suite (a snapshot is named by its id)."""
    work = target.with_name(target.name + ".building")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    root = work / "rootfs"
    kernel = os_tree.bootstrap(release, root, source, pkgs)
    if not kernel:
        raise UserError(f"the image from {source.describe(release)} has no single kernel in /lib/modules")
    _configure(root)
    _installer(root, kernel, work / "installer.img")
    shutil.copy(root / "boot" / f"vmlinuz-{kernel}", work / "linux")
    run(["chroot", str(root), "apt-get", "clean"])
    pack = 'tar -C "$1" --numeric-owner --xattrs --xattrs-include="*" -cf - . | zstd -q -T0 -9 -o "$2"'
    run(["bash", "-o", "pipefail", "-c", pack, "-", str(root), str(work / "rootfs.tar.zst")])
    shutil.rmtree(root)
    record = {
        "snapshot": source.suite,
        "recipe": recipe(pkgs, source),
        "kernel": kernel,
        "sha256": {name: store.hash_file(work / name) for name in FILES},
        "bytes": {name: (work / name).stat().st_size for name in FILES},
    }
    (work / RECORD).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    work.rename(target)
    return record


def ensure(store: Path, snapshot: str, roles_dir: Path, check: bool = False) -> dict[str, Any]:
    """The image of `snapshot`, built when it is missing or its recipe changed; the record, with `built`
    (it was, or in check mode would be) and `dir`."""
    pkgs = packages(roles_dir)
    source, why = os_tree.snapshot_source(store, pkgs, snapshot)
    if source is None:
        raise UserError(
            f"no OS image for network installs: {why} (`sovinfra mirror packages sync` adds them)"
        )
    target = image_dir(store, snapshot)
    record = load(target)
    built = record is None or record.get("recipe") != recipe(pkgs, source)
    if built and not check:
        record = build(target, source, pkgs)
    elif built:  # check mode: what a plan needs, nothing built
        record = {"snapshot": snapshot, "kernel": "", "sha256": dict.fromkeys(FILES, "")}
    return {**(record or {}), "built": built, "dir": str(target)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sovinfra.netboot.image")
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--snapshot", required=True)
    parser.add_argument("--check", action="store_true", help="say whether it would be built; build nothing")
    args = parser.parse_args(argv)
    try:
        record = ensure(args.store, args.snapshot, paths.project_root() / "roles", args.check)
    except UserError as exc:
        print(f"sovinfra: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(record, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
