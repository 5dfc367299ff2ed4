"""The netboot host as the provisioning network's DHCP server (`netboot_dhcp: server`), with the real
dnsmasq and the role's rendered config, in network namespaces (the netboot host, a client, a bridge).

A server takes a lease three times in one install, each time under another client identifier: its iPXE
(`01` + its MAC), the installer's initramfs (none), the installed OS (systemd-networkd: a DUID unless told
otherwise). dnsmasq binds a lease to its client identifier; the reservation is by MAC, and each of the
three must get the inventory's address while the last one's lease runs (never "not using configured
address ... because it is leased to"); a stranger gets nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.integration.test_netboot_proxy_dhcp import Log, ip, unwire, wire
from tests.unit.test_netboot_render import render, templar

UEFI, ADDRESS = "52:54:00:aa:00:01", "10.0.9.11"  # gpu1 in the render test's inventory
STRANGER = "52:54:00:aa:00:99"
NETBOOT = "10.0.9.1"
CLIENT_IDS = {  # as each takes its lease, in the order of an install
    "ipxe": "01" + UEFI.replace(":", ""),
    "installer": "",
    "os": "ff" + "b2c3d4e5" + "0002" + "00008b1e4e9d1a2b3c4d",  # systemd-networkd's IAID + DUID-EN form
}


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("server-dhcp")
    tag = f"sovsd{os.getpid()}"
    proc: subprocess.Popen[str] | None = None
    root = ""
    try:
        names = wire(tag, ("prov", "cli"))
        ip("-n", names["prov"], "addr", "add", f"{NETBOOT}/24", "dev", "prov-0")
        root = tempfile.mkdtemp(prefix=f"{tag}-tftp-")  # dnsmasq drops to its own user: not under tmp
        os.chmod(root, 0o755)
        conf = tmp / "netboot.conf"
        conf.write_text(
            render(templar(["gpu1"]), "dnsmasq.conf.j2", netboot_dhcp="server", netboot_root=root)
        )
        proc = subprocess.Popen(
            ["ip", "netns", "exec", names["prov"], "dnsmasq", "--keep-in-foreground", "--log-facility=-",
             f"--conf-file={conf}", f"--dhcp-leasefile={tmp / 'netboot.leases'}"],
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stderr
        log = Log(proc.stderr)
        log.wait_for("DHCP, ", proc, "netboot")
        yield {"names": names, "proc": proc, "log": log}
    finally:
        if proc:
            proc.terminate()
            proc.wait(10)
        if root:
            shutil.rmtree(root, ignore_errors=True)
        unwire(tag)


def take_lease(network: dict[str, Any], mac: str, kind: str, client_id: str) -> dict[str, Any]:
    assert network["proc"].poll() is None, "\n".join(network["log"].lines)
    out = subprocess.run(
        ["ip", "netns", "exec", network["names"]["cli"], sys.executable, "-m", "tests.dhcp_probe", "cli-0",
         mac, "--as", kind, "--lease", "--client-id", client_id],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return dict(json.loads(out.stdout))


def test_a_server_keeps_its_address_through_firmware_installer_and_os(network: dict[str, Any]) -> None:
    for who, client_id in CLIENT_IDS.items():
        got = take_lease(network, UEFI, "ipxe" if who == "ipxe" else "os", client_id)
        answer = got["answer"] or {}
        assert (answer.get("type"), answer.get("yiaddr")) == ("ACK", ADDRESS), (
            who, got, "\n".join(network["log"].lines[-20:]),
        )  # fmt: skip
    assert not [line for line in network["log"].lines if "not using configured address" in line]


def test_a_mac_the_inventory_does_not_list_gets_no_address(network: dict[str, Any]) -> None:
    assert take_lease(network, STRANGER, "os", "") == {"offer": None, "answer": None}
