"""proxy-DHCP beside a network's own DHCP server, with the real dnsmasq and the role's rendered config.

Three network namespaces on one bridge (in a fourth): the netboot host (the role's dnsmasq.conf with
`netboot_dhcp: proxy` on `prov-0`), the network's own DHCP server (a plain dnsmasq with an address pool and
reservations, as a site has one), and a client that sends DISCOVERs as PXE firmware, iPXE or an installed
OS (tests/dhcp_probe.py). The proxy must tell only the inventory's servers, and only their firmware and
iPXE, where to boot from, never hand out an address, router or DNS server; the site's server answers as
before. Nothing leaves the namespaces.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from sovinfra.netboot import progress
from tests.conftest import ROOT, missing
from tests.unit.test_netboot_render import render, templar

UEFI = "52:54:00:aa:00:01"  # gpu1 in the render test's inventory (uefi)
BIOS = "52:54:00:aa:00:02"  # gpu2 (bios)
STRANGER = "52:54:00:aa:00:99"  # on the network, not in the inventory
PROXY, SITE = "10.0.9.1", "10.0.9.2"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Log:
    """A daemon's stderr, read by a thread (a log of many lines), kept as lines."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def wait_for(self, text: str, proc: subprocess.Popen[str], name: str, timeout_s: float = 15.0) -> None:
        """Until a line with `text` (the daemon is up); a daemon that exits or stays silent fails the test."""
        end = time.monotonic() + timeout_s
        while not any(text in line for line in self.lines):
            if proc.poll() is not None or time.monotonic() > end:
                pytest.fail(f"{name} did not start:\n" + "\n".join(self.lines), pytrace=False)
            time.sleep(0.1)

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))


def wire(tag: str, roles: tuple[str, ...]) -> dict[str, str]:
    """A namespace per role, each with one link `<role>-0` on a bridge in a namespace of its own ("sw"):
    the namespaces' names by role (made before any fails: `unwire` removes what exists)."""
    if os.geteuid() != 0:
        missing("network namespaces need root")
    if not shutil.which("dnsmasq"):
        missing("dnsmasq is not installed (run scripts/setup)")
    names = {role: f"{tag}-{role}" for role in ("sw", *roles)}
    for ns in names.values():
        ip("netns", "add", ns)
    ip("-n", names["sw"], "link", "add", "br0", "type", "bridge")
    ip("-n", names["sw"], "link", "set", "br0", "up")
    for role in roles:
        link = f"{role}-0"
        veth = ("link", "add", f"to-{role}", "type", "veth", "peer", "name", link, "netns", names[role])
        ip("-n", names["sw"], *veth)
        ip("-n", names["sw"], "link", "set", f"to-{role}", "master", "br0", "up")
        ip("-n", names[role], "link", "set", link, "up")
    return names


def unwire(tag: str) -> None:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for ns in [line.split()[0] for line in listed.splitlines() if line.startswith(f"{tag}-")]:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("proxy-dhcp")
    tag = f"sovpx{os.getpid()}"
    procs: list[subprocess.Popen[str]] = []
    cleanup: list[Callable[[], None]] = []
    try:
        names = wire(tag, ("prov", "site", "cli"))
        ip("-n", names["prov"], "addr", "add", f"{PROXY}/24", "dev", "prov-0")
        ip("-n", names["site"], "addr", "add", f"{SITE}/24", "dev", "site-0")

        root = Path(tempfile.mkdtemp(prefix=f"{tag}-tftp-"))  # dnsmasq drops to its own user: not under tmp
        root.chmod(0o755)
        cleanup.append(lambda: shutil.rmtree(root))
        conf = tmp / "netboot.conf"
        conf.write_text(
            render(templar(["gpu1"]), "dnsmasq.conf.j2", netboot_dhcp="proxy", netboot_root=str(root))
        )
        proxy = subprocess.Popen(
            ["ip", "netns", "exec", names["prov"], "dnsmasq", "--keep-in-foreground", "--log-facility=-",
             f"--conf-file={conf}", f"--dhcp-leasefile={tmp / 'proxy.leases'}"],
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        procs.append(proxy)
        site = subprocess.Popen(
            ["ip", "netns", "exec", names["site"], "dnsmasq", "--keep-in-foreground", "--log-facility=-",
             "--conf-file=/dev/null", "--port=0", "--no-ping", "--bind-interfaces", "--interface=site-0",
             "--log-dhcp", "--pid-file=", f"--dhcp-leasefile={tmp / 'site.leases'}", "--dhcp-authoritative",
             "--dhcp-range=10.0.9.100,10.0.9.150,255.255.255.0,1h", "--dhcp-option=option:router,10.0.9.254",
             f"--dhcp-host={UEFI},10.0.9.11", f"--dhcp-host={BIOS},10.0.9.12"],
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        procs.append(site)
        assert proxy.stderr and site.stderr
        logs = {"proxy_log": Log(proxy.stderr), "site_log": Log(site.stderr)}
        for (name, log), proc in zip(logs.items(), procs, strict=True):
            log.wait_for("DHCP, ", proc, name)
        yield {"names": names, "procs": procs, **logs}
    finally:
        for step in cleanup:
            step()
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        unwire(tag)


def answers(
    network: dict[str, Any], mac: str, kind: str
) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """The offers to one DISCOVER, by the server that sent each, and the proxy's boot answer."""
    for proc in network["procs"]:
        assert proc.poll() is None, "\n".join(network["proxy_log"].lines + network["site_log"].lines)
    out = subprocess.run(
        ["ip", "netns", "exec", network["names"]["cli"], sys.executable, "-m", "tests.dhcp_probe", "cli-0",
         mac, "--as", kind],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    got = json.loads(out.stdout)
    offers: dict[str, dict[str, Any]] = {}
    for offer in got["offers"]:
        assert offer["server"] not in offers, f"two offers from {offer['server']}"
        offers[offer["server"]] = offer
    return offers, got["boot"]


@pytest.mark.parametrize(
    ("mac", "kind", "file"),
    [
        (BIOS, "bios", "undionly.kpxe"),
        (UEFI, "uefi7", "snponly.efi"),
        (UEFI, "uefi9", "snponly.efi"),
        (BIOS, "ipxe", "boot.ipxe"),
        (UEFI, "ipxe", "boot.ipxe"),
    ],
)
def test_a_listed_servers_firmware_and_ipxe_are_told_where_to_boot_and_get_no_address_from_it(
    network: dict[str, Any], mac: str, kind: str, file: str
) -> None:
    offers, boot = answers(network, mac, kind)
    assert set(offers) == {PROXY, SITE}, "\n".join(network["proxy_log"].lines[-30:])
    proxy, site = offers[PROXY], offers[SITE]
    address = "10.0.9.11" if mac == UEFI else "10.0.9.12"
    assert (site["type"], site["yiaddr"], site["router"]) == ("OFFER", address, True)
    # The proxy's offer: no address, no router (the network's own server hands out both); BIOS firmware gets a
    # boot menu (one item, no prompt), UEFI firmware none (it asks the boot server straight away).
    assert (proxy["type"], proxy["yiaddr"], proxy["vendor_class"]) == ("OFFER", "0.0.0.0", "PXEClient")
    assert not proxy["router"] and bool(proxy["pxe"]["menu"]) == (kind in ("bios", "ipxe"))
    # The firmware (or iPXE) asks the proxy on port 4011 for its boot file, from the site's address.
    assert boot, "\n".join(network["proxy_log"].lines[-30:])
    assert (boot["type"], boot["server"], boot["file"]) == ("ACK", PROXY, file)
    assert boot["siaddr"] == PROXY and boot["yiaddr"] in ("0.0.0.0", address) and not boot["router"]


@pytest.mark.parametrize(
    ("mac", "kind"), [(STRANGER, "bios"), (STRANGER, "ipxe"), (BIOS, "os"), (UEFI, "os")]
)
def test_a_stranger_and_an_installed_os_get_nothing_from_the_proxy(
    network: dict[str, Any], mac: str, kind: str
) -> None:
    offers, boot = answers(network, mac, kind)
    assert set(offers) == {SITE} and boot is None  # the network's own server still answers them
    assert offers[SITE]["yiaddr"].startswith("10.0.9.")


def test_the_proxy_answers_count_as_the_dhcp_stage_of_a_servers_progress(network: dict[str, Any]) -> None:
    answers(network, BIOS, "bios")
    clients = [progress.Client("gpu2", BIOS, "10.0.9.12"), progress.Client("gpu1", UEFI, "10.0.9.11")]
    seen = progress.read(network["proxy_log"].lines, clients)
    assert seen["gpu2"].stage == "dhcp", [line for line in network["proxy_log"].lines if "PXE(" in line]
