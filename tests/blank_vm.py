"""A blank libvirt VM for tests: an empty disk, one NIC, legacy BIOS (SeaBIOS, whose boot mode a Redfish
emulator reports as Legacy), no OS: what a new server is to its BMC."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

from sovinfra.lab import vm

BIOS = "/usr/share/seabios/bios-256k.bin"


def virsh(*args: str) -> str:
    return subprocess.run(
        ["virsh", "-c", vm.LIBVIRT_URI, *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def domain_xml(name: str, disk: Path, nic: str, memory_mib: int = 64, console: Path | None = None) -> str:
    """`nic`: the <interface> element (user networking, or a bridge)."""
    serial = f"<serial type='file'><source path='{console}'/><target port='0'/></serial>" if console else ""
    return textwrap.dedent(f"""\
        <domain type='qemu'>
          <name>{name}</name>
          <memory unit='MiB'>{memory_mib}</memory>
          <vcpu>1</vcpu>
          <os>
            <type arch='x86_64' machine='pc'>hvm</type>
            <loader type='rom'>{BIOS}</loader>
            <boot dev='hd'/>
          </os>
          <devices>
            <disk type='file' device='disk'>
              <driver name='qemu' type='raw'/><source file='{disk}'/><target dev='vda' bus='virtio'/>
            </disk>
            {nic}
            {serial}
          </devices>
        </domain>""")
