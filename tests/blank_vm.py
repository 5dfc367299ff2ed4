"""A blank libvirt VM for tests: an empty disk, one NIC, legacy BIOS (SeaBIOS, whose boot mode a Redfish
emulator reports as Legacy) or UEFI (OVMF without Secure Boot, its variables in the domain's own NVRAM
file), no OS: what a new server is to its BMC."""

from __future__ import annotations

import contextlib
import os
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

from sovinfra.lab import vm

BIOS = "/usr/share/seabios/bios-256k.bin"
UEFI_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
UEFI_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"


def virsh(*args: str) -> str:
    return subprocess.run(
        ["virsh", "-c", vm.LIBVIRT_URI, *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def domain_xml(
    name: str, disk: Path, nic: str, memory_mib: int = 64, console: Path | None = None, firmware: str = "bios"
) -> str:
    """`nic`: the <interface> element (user networking, or a bridge); `firmware`: bios or uefi."""
    serial = f"<serial type='file'><source path='{console}'/><target port='0'/></serial>" if console else ""
    loader = (
        f"<loader readonly='yes' type='pflash'>{UEFI_CODE}</loader>"
        f"<nvram template='{UEFI_VARS}'>{disk.with_suffix('.vars.fd')}</nvram>"
        if firmware == "uefi"
        else f"<loader type='rom'>{BIOS}</loader>"
    )
    features = "<features><acpi/></features>" if firmware == "uefi" else ""  # libvirt: UEFI needs ACPI
    return textwrap.dedent(f"""\
        <domain type='qemu'>
          <name>{name}</name>
          <memory unit='MiB'>{memory_mib}</memory>
          <vcpu>1</vcpu>
          <os>
            <type arch='x86_64' machine='pc'>hvm</type>
            {loader}
            <boot dev='hd'/>
          </os>
          {features}
          <devices>
            <disk type='file' device='disk'>
              <driver name='qemu' type='raw'/><source file='{disk}'/><target dev='vda' bus='virtio'/>
            </disk>
            {nic}
            {serial}
          </devices>
        </domain>""")


@contextlib.contextmanager
def defined(
    name: str,
    work: Path,
    nic: str,
    memory_mib: int = 64,
    console: Path | None = None,
    firmware: str = "bios",
    disk_gib: int = 4,
) -> Iterator[str]:
    """A blank VM defined (libvirt's daemons started when they were not), and gone afterwards: its
    domain, its disk, the daemons this started."""
    started = vm.ensure_libvirt(lambda _: None)
    disk = vm.POOL_DIR / f"{name}.raw"
    disk.write_bytes(b"")
    os.truncate(disk, disk_gib << 30)  # sparse: only what the VM writes takes space
    xml = work / f"{name}.xml"
    xml.write_text(domain_xml(name, disk, nic, memory_mib, console, firmware))
    made = False
    try:
        virsh("define", str(xml))
        made = True
        yield name
    finally:
        if made and virsh("domstate", name) != "shut off":
            virsh("destroy", name)
        if made:
            virsh("undefine", name, *(["--nvram"] if firmware == "uefi" else []))
        disk.unlink(missing_ok=True)
        if started:
            vm.stop_libvirt()
