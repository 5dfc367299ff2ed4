"""`sovinfra bmc` against a real Redfish service: OpenStack's sushy-tools emulator in front of a libvirt
VM (a blank one: no OS, it sits in its firmware), behind TLS with its own CA and a password, as a
server's BMC is. Power and the next boot are read back from libvirt itself, not from the emulator; bad
credentials, an untrusted certificate and malformed inventories power nothing."""

from __future__ import annotations

import json
import os
import shutil
import socket
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from sovinfra import paths
from sovinfra.cli import cli
from sovinfra.lab import bmc_emulator
from sovinfra.lab.model import encrypt
from sovinfra.netboot import hostkeys
from tests import blank_vm
from tests.blank_vm import virsh
from tests.conftest import missing

USER = "sovinfra-admin"
PASSWORD = "bmc-" + uuid.uuid4().hex[:12]  # only ever in the vault and the emulator's bcrypt hash


@dataclass
class Server:
    domain: str
    emulator: bmc_emulator.Emulator
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if os.geteuid() != 0:
        missing("libvirt VMs need root")
    if not shutil.which("virsh") or not shutil.which("libvirtd"):
        missing("libvirt is not installed (scripts/setup installs it)")
    nic = "<interface type='user'><mac address='52:54:00:5f:01:01'/><model type='virtio'/></interface>"
    work = tmp_path_factory.mktemp("bmc")
    with blank_vm.defined(f"sovinfra-test-bmc-{os.getpid()}", work, nic) as name:
        emulator = bmc_emulator.start(
            work, "127.0.0.1", _free_port(), USER, PASSWORD, [virsh("domuuid", name)]
        )
        try:
            yield Server(name, emulator, work / "emulator.log")
        finally:
            bmc_emulator.stop(emulator.pid)


def inventory(tmp: Path, server: Server, netboot_host: bool = False, **overrides: object) -> Path:
    """A site whose node1 is the emulated server: password vaulted, the BMC's CA beside the hosts file."""
    vault_file = tmp / "vault-password"
    vault_file.write_text(uuid.uuid4().hex + "\n")
    shutil.copy(server.emulator.ca_file, tmp / "bmc-ca.pem")
    node = {
        "ansible_host": "10.0.9.11",
        "bmc_address": server.emulator.url.removeprefix("https://"),
        "bmc_user": USER,
        "bmc_password": "VAULTED",
        "bmc_ca_file": "bmc-ca.pem",
        "netboot_firmware": "bios",
        **overrides,
    }
    lines = []
    for key, value in node.items():
        if value == "VAULTED":
            cipher = textwrap.indent(encrypt(PASSWORD, vault_file), " " * 12)
            lines.append(f"        {key}: !vault |\n{cipher}")
        elif value is not None:
            lines.append(f"        {key}: {json.dumps(value)}")
    hosts = tmp / "hosts.yml"
    hosts.write_text(
        "all:\n  children:\n    gpu_nodes:\n      hosts:\n        node1:\n"
        + textwrap.indent("\n".join(lines), "    ")
        + "\n    model_mirror:\n      hosts: {}\n    inference:\n      hosts: {}\n"
        + ("    netboot:\n      hosts:\n        mirror1: {ansible_host: 10.0.9.5}\n" if netboot_host else "")
    )
    return hosts


def bmc(hosts: Path, *args: str) -> tuple[int, str]:
    vault = hosts.parent / "vault-password"
    result = CliRunner().invoke(
        cli, ["bmc", *args, "-i", str(hosts), "--vault-password-file", str(vault)], catch_exceptions=False
    )
    return result.exit_code, result.output


def requests_seen(server: Server) -> int:
    return sum(
        1 for line in server.log.read_text().splitlines() if '"GET /redfish' in line or '"POST /' in line
    )


def test_status_power_and_next_boot_are_what_libvirt_then_reports(server: Server, tmp_path: Path) -> None:
    hosts = inventory(tmp_path, server)
    code, out = bmc(hosts, "status", "--json")
    assert code == 0, out
    status = json.loads(out)["hosts"]["node1"]["status"]
    assert status["power"] == "Off" and status["uuid"] == virsh("domuuid", server.domain)

    code, out = bmc(hosts, "power", "on", "--limit", "node1", "--json")
    assert code == 0, out
    assert json.loads(out)["hosts"]["node1"]["done"] == "On"
    assert virsh("domstate", server.domain) == "running"
    code, out = bmc(hosts, "power", "on", "--limit", "node1")
    assert code == 0 and "already on" in out

    code, out = bmc(hosts, "boot-once", "pxe", "--limit", "node1", "--json")
    assert code == 0, out
    # In the host's firmware mode, which it already had: no firmware change was asked for.
    status = json.loads(out)["hosts"]["node1"]["status"]
    assert (status["boot_target"], status["boot_mode"]) == ("Pxe", "Legacy")
    # libvirt's own view: the NIC boots first, the disk after it (the emulator keeps it as the fallback).
    xml = virsh("dumpxml", "--inactive", server.domain)
    nic = xml[xml.index("<interface") : xml.index("</interface>")]
    disk = xml[xml.index("<disk") : xml.index("</disk>")]
    assert "<boot order='1'/>" in nic and "<boot order='1'/>" not in disk

    code, out = bmc(hosts, "boot-once", "disk", "--limit", "node1")
    assert code == 0 and "boot Hdd" in out, out
    xml = virsh("dumpxml", "--inactive", server.domain)
    assert "<boot order='1'/>" in xml[xml.index("<disk") : xml.index("</disk>")]

    code, out = bmc(hosts, "power", "cycle", "--limit", "node1", "--json")
    assert code == 0 and json.loads(out)["hosts"]["node1"]["done"] in ("PowerCycle", "ForceRestart"), out
    assert virsh("domstate", server.domain) == "running"
    code, out = bmc(hosts, "power", "off", "--limit", "node1")
    assert code == 0, out
    assert virsh("domstate", server.domain) == "shut off"
    assert PASSWORD not in server.log.read_text() and PASSWORD not in out


def test_a_wrong_password_or_an_untrusted_certificate_powers_nothing(server: Server, tmp_path: Path) -> None:
    if virsh("domstate", server.domain) != "shut off":
        virsh("destroy", server.domain)
    hosts = inventory(tmp_path, server)
    text = hosts.read_text()
    # A second host whose BMC refuses the login: the good one is not powered either.
    hosts.write_text(
        text.replace(
            "    model_mirror:",
            "        node2:\n"
            + "".join(
                f"          {k}: {json.dumps(v)}\n"
                for k, v in {
                    "ansible_host": "10.0.9.12",
                    "bmc_address": server.emulator.url,
                    "bmc_user": USER,
                    "bmc_password": "not-the-password",
                    "bmc_ca_file": "bmc-ca.pem",
                }.items()
            )
            + "    model_mirror:",
        )
    )
    code, out = bmc(hosts, "power", "on", "--limit", "node1,node2")
    assert code == 2, out
    assert (
        "node2: BMC https://127.0.0.1" in out and "refused the login" in out and "nothing was powered" in out
    )
    assert "Traceback" not in out and "not-the-password" not in out
    assert virsh("domstate", server.domain) == "shut off"
    # Without --limit, two servers are not powered off on a whim.
    code, out = bmc(hosts, "power", "off")
    assert code == 2 and "--limit" in out and "--yes" in out

    # The BMC's certificate is not in the system's trust store: refused, never trusted anyway.
    hosts = inventory(tmp_path, server, bmc_ca_file=None)
    code, out = bmc(hosts, "power", "on", "--limit", "node1")
    assert code == 2 and "certificate is not trusted" in out and "bmc_ca_file" in out, out
    assert virsh("domstate", server.domain) == "shut off"


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("bmc_address", "http://127.0.0.1:8000", "only https"),
        ("bmc_address", "bmc node1", "neither an IP address nor a valid host name"),
        ("bmc_password", None, "not set"),
        ("bmc_ca_file", "no-such-ca.pem", "does not exist"),
        ("bmc_protocol", "ipmi", "ipmi"),
        ("netboot_firmware", "efi", "efi"),
    ],
)
def test_bad_bmc_keys_are_named_before_any_bmc_is_asked(
    server: Server, tmp_path: Path, key: str, value: object, says: str
) -> None:
    before = requests_seen(server)
    hosts = inventory(tmp_path, server, **{key: value})
    code, out = bmc(hosts, "power", "on", "--limit", "node1")
    assert code == 2, out
    assert f"{hosts}" in out and key in out and says in out, out
    assert "Traceback" not in out
    assert requests_seen(server) == before


def test_provision_checks_everything_before_it_touches_a_server(server: Server, tmp_path: Path) -> None:
    if virsh("domstate", server.domain) != "shut off":
        virsh("destroy", server.domain)
    hosts = inventory(tmp_path, server, netboot_mac="52:54:00:5f:01:01")
    vault = hosts.parent / "vault-password"

    def provision(hosts: Path) -> tuple[int, str]:
        result = CliRunner().invoke(
            cli, ["provision", "node1", "--yes", "-i", str(hosts), "--vault-password-file", str(vault)]
        )
        return result.exit_code, result.output

    # No netboot host, no disk: both named, with their files and keys.
    code, out = provision(hosts)
    assert code == 2, out
    assert "netboot: no host in group netboot" in out and "netboot_disk (host node1): not set" in out
    assert "nothing was touched" in out and "Traceback" not in out
    # A site that could install it, but its BMC refuses the login: no key made, nothing powered.
    hosts = inventory(
        tmp_path, server, netboot_host=True, netboot_mac="52:54:00:5f:01:01", netboot_disk="/dev/vda",
        bmc_password="wrong",
    )  # fmt: skip
    before = requests_seen(server)
    code, out = provision(hosts)
    assert code == 2 and "refused the login" in out and "nothing was touched" in out, out
    assert virsh("domstate", server.domain) == "shut off"
    assert requests_seen(server) > before  # it did ask the BMC (and only logged in)
    assert not (hostkeys.store(paths.project_root() / "roles") / "node1").exists()
