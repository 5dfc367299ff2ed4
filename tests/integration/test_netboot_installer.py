"""The network installer itself, under QEMU (TCG) and without the lab: QEMU's user network is the DHCP and
TFTP server the installer talks to, as the netboot host's dnsmasq is at a site (the whole chain through
firmware, dnsmasq and the BMC is tests/integration/test_lab_netboot.py). The image and its installer are
made by the product's own builder, from Debian's registry.

An image whose sha256 is not the one its boot script names is refused before anything of it is unpacked:
the installer says so and stops (no reboot into a half-written disk). The real image's install, under
BIOS and UEFI firmware, is the lab's (test_lab_netboot.py); planting a server's files, the unit test's
(test_netboot_render.py).
"""

from __future__ import annotations

import base64
import subprocess
import time
from pathlib import Path

import pytest

from sovinfra.lab import config
from sovinfra.mirror import os_tree, store
from sovinfra.netboot import image
from tests.conftest import ROOT

INSTALL_BUDGET_S = 900  # TCG: the installer's boot, the image over TFTP, unpacking, GRUB


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("netboot-image") / "image"
    image.build(
        target, os_tree.Source(config.DEBIAN_MIRROR), image.packages(ROOT / "roles"), config.DEFAULT_RELEASE
    )
    return target


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The TFTP tree with the server's own file as the netboot role writes it ("path mode base64",
    hosts/<mac>.install): the installer takes it before it erases the disk."""
    work = tmp_path_factory.mktemp("server")
    (work / "tftp" / "hosts").mkdir(parents=True)
    name = base64.b64encode(b"pxe9\n").decode()
    entry = f"etc/hostname 0644 {name}\n"
    (work / "tftp" / "hosts" / "52-54-00-00-00-09.install").write_text(entry)
    return work


def install(built: Path, work: Path, sha256: str, stop_at: str) -> str:
    """Boot the installer on a blank disk (work/disk.qcow2) until QEMU exits (it reboots: -no-reboot) or
    the console says `stop_at`; the console."""
    tftp = work / "tftp" / "images" / "S"
    tftp.mkdir(parents=True, exist_ok=True)
    (tftp / "rootfs.tar.zst").unlink(missing_ok=True)
    (tftp / "rootfs.tar.zst").hardlink_to(built / "rootfs.tar.zst")
    disk, console = work / "disk.qcow2", work / f"console-{stop_at.split()[0]}.log"
    disk.unlink(missing_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "24G"], check=True)
    args = " ".join([
        "console=ttyS0,115200n8", "ip=dhcp", "sovinfra.server=10.0.2.2",
        "sovinfra.image=images/S/rootfs.tar.zst", f"sovinfra.sha256={sha256}",
        "sovinfra.files=hosts/52-54-00-00-00-09.install", "sovinfra.disk=/dev/vda",
    ])  # fmt: skip
    proc = subprocess.Popen(
        ["qemu-system-x86_64", "-m", "1024", "-display", "none", "-no-reboot", "-serial", f"file:{console}",
         "-kernel", str(built / "linux"), "-initrd", str(built / "installer.img"), "-append", args,
         "-netdev", f"user,id=n0,tftp={work / 'tftp'}", "-device", "virtio-net-pci,netdev=n0",
         "-drive", f"file={disk},if=virtio"],
    )  # fmt: skip
    try:
        deadline = time.monotonic() + INSTALL_BUDGET_S
        while proc.poll() is None and time.monotonic() < deadline:
            if console.exists() and stop_at in console.read_text(errors="replace"):
                break
            time.sleep(2)
    finally:
        proc.kill()
        proc.wait()
    return console.read_text(errors="replace")


def test_an_image_that_is_not_the_one_named_is_refused_before_it_is_unpacked(
    built: Path, server: Path
) -> None:
    wrong = store.hash_file(built / "installer.img")  # a real file's sum, not the image's
    console = install(built, server, wrong, "FAILED")
    assert "sovinfra-installer: FAILED: images/S/rootfs.tar.zst: its sha256 is not the one" in console, (
        console[-3000:]
    )
    # It had the server's files and the disk; it unpacked nothing and did not reboot.
    assert "asking 10.0.2.2 for hosts/52-54-00-00-00-09.install" in console
    assert "unpacking" not in console and "sovinfra-installer: installed" not in console
    assert "reboot: Restarting" not in console
