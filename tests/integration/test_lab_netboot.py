"""Network boot from the lab's site: the netboot role on the mirror host (dnsmasq on the lab network,
iPXE, Debian's installer from the site snapshot), and a blank libvirt VM on the same network, driven
through its emulated BMC (sushy-tools), network-boots into the installer with its own preseed; nothing
leaves the lab (its egress counter is unchanged). Then the server is no longer to be installed: its
script sends it to its disk, its preseed is gone, and a second converge changes nothing."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from sovinfra import paths
from sovinfra.cli import cli
from sovinfra.lab import bmc_emulator, config, manager
from sovinfra.lab import state as lab_state
from sovinfra.lab.model import encrypt
from sovinfra.netboot import hostkeys, progress
from tests import blank_vm
from tests.blank_vm import virsh

pytestmark = pytest.mark.lab


@dataclass(frozen=True)
class Server:
    name: str
    mac: str
    firmware: str
    address_offset: int

    @property
    def file(self) -> str:  # how the netboot service names its script and preseed
        return self.mac.replace(":", "-")

    def address(self) -> str:
        return str(config.subnet().network_address + self.address_offset)


# A BIOS server (SeaBIOS, network boot by the NIC's own iPXE ROM) and a UEFI one (OVMF's own PXE, the NIC's
# ROM off: the firmware asks DHCP as an EFI client and must be sent snponly.efi).
SERVERS = (Server("pxe1", "52:54:00:5f:02:01", "bios", 150), Server("pxe2", "52:54:00:5f:02:02", "uefi", 151))
HOST, FILE = SERVERS[0].name, SERVERS[0].file  # the one provisioned below
BOOT_BUDGET_S = 900  # TCG: the installer's kernel and initrd over TFTP, then its boot
USER = "sovinfra-admin"
PASSWORD = "bmc-" + uuid.uuid4().hex[:12]


@dataclass
class Site:
    inventory: Path
    vault: Path
    domains: dict[str, str]  # server -> libvirt domain
    consoles: dict[str, Path]


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def on_mirror(command: str) -> str:
    return subprocess.run(
        [*manager.ssh_argv("mirror1"), command], capture_output=True, text=True, check=True
    ).stdout


def netboot_log(since: float) -> str:
    """What the netboot service logged since `since` (seconds since the epoch): this test's boot only."""
    return on_mirror(f"journalctl -u sovinfra-netboot --no-pager -o cat --since @{int(since)}")


def apply(site: Site, *extra: str) -> dict:
    code, out = invoke(
        "apply", "netboot", "-i", str(site.inventory), "--limit", "mirror1", "--no-lock",
        "--vault-password-file", str(site.vault), "--json", *extra,
    )  # fmt: skip
    assert code == 0, out
    return json.loads(out[out.index("{") :])


def _write_inventory(target: Path, bmc_url: str, ca_file: Path, systems: dict[str, str]) -> tuple[Path, Path]:
    shutil.copytree(paths.lab_inventory_dir(), target)
    hosts_file = target / "hosts.yml"
    doc = yaml.safe_load(hosts_file.read_text())
    doc["all"]["children"]["netboot"] = {"hosts": {"mirror1": None}}
    doc["all"]["children"]["provisioning"] = {
        "hosts": {x.name: {"ansible_host": x.address()} for x in SERVERS}
    }
    hosts_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    vault = paths.lab_dir() / "vault-password"
    client_key = (paths.lab_dir() / "id_ed25519.pub").read_text().strip()
    (target / "group_vars" / "netboot.yml").write_text(
        yaml.safe_dump(
            {
                "netboot_interface": "host0",
                "netboot_install": [x.name for x in SERVERS],
                "netboot_authorized_keys": [client_key],
            }
        )
    )
    # The registry that serves these machines answers 404 for every .udeb: the snapshot cannot hold the
    # installer's components here, so the installer boots and reads its preseed but cannot install.
    (target / "group_vars" / "model_mirror.yml").write_text("model_mirror_apt_installer_components: false\n")
    shutil.copy(ca_file, target / "bmc-ca.pem")
    cipher = textwrap.indent(encrypt(PASSWORD, vault), "  ")
    (target / "host_vars").mkdir(exist_ok=True)
    for server in SERVERS:
        (target / "host_vars" / f"{server.name}.yml").write_text(
            f"netboot_mac: '{server.mac}'\nnetboot_disk: /dev/vda\nnetboot_firmware: {server.firmware}\n"
            f"bmc_address: '{bmc_url}'\nbmc_system_id: {systems[server.name]}\nbmc_user: {USER}\n"
            f"bmc_ca_file: ../bmc-ca.pem\nbmc_password: !vault |\n{cipher}\n"
        )
    return target, vault


@pytest.fixture(scope="module")
def site(lab_inventory: str, converged: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    work = tmp_path_factory.mktemp("netboot")
    consoles = {x.name: work / f"{x.name}-console.log" for x in SERVERS}
    with contextlib.ExitStack() as stack:
        domains = {}
        for x in SERVERS:
            rom = "<rom enabled='no'/>" if x.firmware == "uefi" else ""
            nic = (
                f"<interface type='bridge'><source bridge='{config.BRIDGE}'/><mac address='{x.mac}'/>"
                f"<model type='virtio'/>{rom}</interface>"
            )
            domains[x.name] = stack.enter_context(
                blank_vm.defined(
                    f"sovinfra-test-{x.name}-{os.getpid()}", work, nic, 1024, consoles[x.name], x.firmware
                )
            )
        # One Redfish service for both (each server names its system: bmc_system_id).
        systems = {name: virsh("domuuid", domain) for name, domain in domains.items()}
        emulator = bmc_emulator.start(
            work / "bmc", "127.0.0.1", 18000 + os.getpid() % 1000, USER, PASSWORD, list(systems.values())
        )
        try:
            inventory, vault = _write_inventory(work / "inventory", emulator.url, emulator.ca_file, systems)
            # As an operator adds network boot to a site: a snapshot that holds the installer, then the
            # mirror host converged onto it (its netboot role too).
            code, out = invoke("mirror", "packages", "sync", "-i", str(inventory), "--json")
            assert code == 0, out
            code, out = invoke(
                "apply", "-i", str(inventory), "--limit", "mirror1", "--no-lock",
                "--vault-password-file", str(vault), "--json",
            )  # fmt: skip
            assert code == 0, out
            yield Site(inventory, vault, domains, consoles)
        finally:
            # Nothing answers DHCP on the lab's network after this module (it is not in the lab's inventory).
            subprocess.run(
                [*manager.ssh_argv("mirror1"), "systemctl disable --now sovinfra-netboot"], check=False
            )
            bmc_emulator.stop(emulator.pid)


@pytest.mark.parametrize("server", SERVERS, ids=[x.firmware for x in SERVERS])
def test_a_blank_server_boots_the_installer_from_the_site_through_its_bmc(site: Site, server: Server) -> None:
    # The site converge set it up; the installer's components are in the snapshot it serves.
    script = on_mirror(f"cat /srv/sovinfra/netboot/hosts/{server.file}.ipxe")
    assert script.count("kernel /debian-installer/amd64/linux ") == 1
    label = "gpt" if server.firmware == "uefi" else "msdos"  # the disk's label follows the firmware
    preseed = on_mirror(f"cat /srv/sovinfra/netboot/hosts/{server.file}.preseed")
    assert f"partman-partitioning/choose_label select {label}" in preseed
    egress_before = manager.egress_packets()

    booted = time.time()
    bmc = ("-i", str(site.inventory), "--vault-password-file", str(site.vault), "--limit", server.name)
    code, out = invoke("bmc", "boot-once", "pxe", *bmc)
    assert code == 0, out
    code, out = invoke("bmc", "power", "on", *bmc)
    assert code == 0, out

    preseed_sent = re.compile(rf"sent \S*/hosts/{server.file}\.preseed to ")
    deadline = time.monotonic() + BOOT_BUDGET_S
    log = ""
    while time.monotonic() < deadline:
        log = netboot_log(booted)
        if preseed_sent.search(log):
            break
        time.sleep(10)
    console_file = site.consoles[server.name]
    console = console_file.read_text(errors="replace") if console_file.exists() else ""
    assert preseed_sent.search(log), (
        f"no preseed fetched in {BOOT_BUDGET_S} s\n{log[-3000:]}\n{console[-3000:]}"
    )
    # The chain: DHCP for this MAC, (UEFI firmware: iPXE for EFI), iPXE's script, the server's own, the
    # installer, then its preseed.
    assert re.search(rf"DHCPACK\(host0\) \S+ {server.mac} {server.name}", log), log[-3000:]
    chain = ["boot.ipxe", f"hosts/{server.file}.ipxe", "debian-installer/amd64/linux", "initrd.gz"]
    for sent in (["snponly.efi"] if server.firmware == "uefi" else []) + chain:
        assert re.search(rf"sent \S*/{re.escape(sent)} to ", log), (sent, log[-3000:])
    assert "Linux version" in console  # the installer's kernel runs, on its serial console
    assert manager.egress_packets() == egress_before

    code, out = invoke("bmc", "power", "off", *bmc)
    assert code == 0, out


@contextlib.contextmanager
def networks_own_dhcp(work: Path) -> Iterator[Path]:
    """The lab network's own DHCP server, as a site has one (addresses reserved per MAC, a router), on the
    lab bridge beside the netboot service; its log's path. Stopped, by its PID, on the way out."""
    log = work / "site-dhcp.log"
    hosts = [f"--dhcp-host={x.mac},{x.address()}" for x in SERVERS]
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0", "--bind-interfaces",
             f"--interface={config.BRIDGE}", "--except-interface=lo", "--log-dhcp", "--log-facility=-",
             "--pid-file=", f"--dhcp-leasefile={work / 'site-dhcp.leases'}", "--no-ping",
             f"--dhcp-range={config.subnet().network_address},static,{config.subnet().netmask},10m",
             f"--dhcp-option=option:router,{config.gateway()}", *hosts],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while "DHCP, " not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None and "DHCP, " in log.read_text(), log.read_text()
        yield log
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("server", SERVERS, ids=[x.firmware for x in SERVERS])
def test_beside_the_networks_own_dhcp_a_proxy_boots_the_server_into_the_installer(
    site: Site, server: Server, tmp_path: Path
) -> None:
    """netboot_dhcp: proxy. The network's server hands out the address; the netboot service only tells the
    firmware (SeaBIOS' NIC ROM is iPXE: the boot script at once; OVMF's own PXE: snponly.efi) and then
    iPXE where to boot from, and the chain to the installer and its preseed is the same."""
    proxy = {"netboot_dhcp": "proxy"}
    try:
        changed = apply(site, "-e", json.dumps(proxy))
        assert changed["ok"] and changed["hosts"]["mirror1"]["changed"] > 0, changed
        assert "dhcp-range=" in on_mirror(
            "grep -E '^dhcp-range=.*,proxy,' /etc/sovinfra/netboot/dnsmasq.conf"
        )
        egress_before = manager.egress_packets()
        with networks_own_dhcp(tmp_path) as site_log:
            booted = time.time()
            bmc = (
                "-i",
                str(site.inventory),
                "--vault-password-file",
                str(site.vault),
                "--limit",
                server.name,
            )
            for step in (("bmc", "boot-once", "pxe"), ("bmc", "power", "on")):
                code, out = invoke(*step, *bmc)
                assert code == 0, out
            preseed_sent = re.compile(
                rf"sent \S*/hosts/{server.file}\.preseed to {re.escape(server.address())}"
            )
            deadline = time.monotonic() + BOOT_BUDGET_S
            log = ""
            while time.monotonic() < deadline and not preseed_sent.search(log):
                time.sleep(10)
                log = netboot_log(booted)
            assert preseed_sent.search(log), (
                f"no preseed fetched\n{log[-3000:]}\n{site_log.read_text()[-2000:]}"
            )
            code, out = invoke("bmc", "power", "off", *bmc)
            assert code == 0, out
            leases = site_log.read_text()
        # The address came from the network's server, never from the netboot service.
        assert re.search(rf"DHCPACK\({config.BRIDGE}\) {re.escape(server.address())} {server.mac}", leases)
        assert "DHCPACK" not in log and "DHCPOFFER" not in log, log[-3000:]
        # The proxy named the boot file to this server at its address: iPXE for the UEFI firmware, then the
        # boot script to iPXE (SeaBIOS' NIC ROM is iPXE already).
        lines = log.splitlines()
        named = list(dict.fromkeys(f for _, mac, f in progress.proxy_boot_files(lines) if mac == server.mac))
        assert named == (["snponly.efi", "boot.ipxe"] if server.firmware == "uefi" else ["boot.ipxe"]), log
        for sent in ("boot.ipxe", f"hosts/{server.file}.ipxe", "debian-installer/amd64/linux", "initrd.gz"):
            assert re.search(rf"sent \S*/{re.escape(sent)} to ", log), (sent, log[-3000:])
        assert manager.egress_packets() == egress_before
    finally:
        invoke("bmc", "power", "off", "-i", str(site.inventory), "--vault-password-file", str(site.vault),
               "--limit", server.name)  # fmt: skip
        back = apply(site)
        assert back["ok"], back
        assert on_mirror("grep -c ',static,' /etc/sovinfra/netboot/dnsmasq.conf").strip() == "1"


def test_once_installed_the_server_boots_its_disk_and_the_role_is_idempotent(site: Site) -> None:
    done = apply(site, "-e", '{"netboot_install": []}')
    assert done["ok"] and done["hosts"]["mirror1"]["changed"] > 0, done
    script = on_mirror(f"cat /srv/sovinfra/netboot/hosts/{FILE}.ipxe")
    assert "kernel" not in script and "\nexit\n" in script
    assert on_mirror(f"ls /srv/sovinfra/netboot/hosts/{FILE}.preseed 2>/dev/null || true").strip() == ""
    again = apply(site, "-e", '{"netboot_install": []}')
    assert again["ok"] and again["hosts"]["mirror1"]["changed"] == 0, again["changes"]
    checked = apply(site, "-e", '{"netboot_install": []}', "--check")
    assert checked["ok"] and checked["hosts"]["mirror1"]["changed"] == 0, checked["changes"]


def test_provision_leaves_alone_a_server_that_answers_as_another_machine(site: Site, tmp_path: Path) -> None:
    """The server's address answers ssh with a key other than the one pinned for it (here: gpu1's address
    and a key gpu1 does not have, as when the BMC or the MAC in the inventory belongs to another server
    than the address): nothing is powered, no key is made, nothing is told to install."""
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    address = lab_state.load().hosts["gpu1"].address
    known = tmp_path / "known_hosts"
    known.write_text(f"{address} {' '.join(other.with_suffix('.pub').read_text().split()[:2])}\n")
    host_vars = site.inventory / "host_vars" / f"{HOST}.yml"
    kept = host_vars.read_text()
    served = on_mirror(f"cat /srv/sovinfra/netboot/hosts/{FILE}.ipxe")
    try:
        host_vars.write_text(
            kept + f"ansible_host: {address}\n"
            f"ansible_ssh_common_args: '-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes'\n"
        )
        state = virsh("domstate", site.domains[HOST])
        code, out = invoke(
            "provision", HOST, "--yes", "-i", str(site.inventory), "--vault-password-file", str(site.vault)
        )
        assert code == 2, out
        assert f"{HOST} answers ssh with a host key other than the one pinned for it" in out, out
        assert "nothing was touched" in out and "--other-machine" in out and "Traceback" not in out
        assert virsh("domstate", site.domains[HOST]) == state
        assert not (hostkeys.store(paths.project_root() / "roles") / HOST).exists()
        assert on_mirror(f"cat /srv/sovinfra/netboot/hosts/{FILE}.ipxe") == served
    finally:
        host_vars.write_text(kept)


def test_provision_drives_the_install_and_says_where_it_stopped(site: Site) -> None:
    """The whole of `sovinfra provision` up to the install itself, which cannot complete here (no udebs):
    it pins the key it made, boots the server into the installer with its preseed, sends its next boot to
    the disk, and reports the server that does not come back with the last stage the netboot service saw."""
    address = SERVERS[0].address()
    try:
        code, out = invoke(
            "provision", HOST, "--yes", "--budget-min", "5", "-i", str(site.inventory),
            "--vault-password-file", str(site.vault), "--json",
        )  # fmt: skip
        record = json.loads(out[out.index("{") :])
        assert code == 1 and not record["ok"], out
        assert record["netboot"][HOST]["stage"] == "preseed", record["netboot"]
        assert HOST in record["not_answering"]
        assert [s["step"] for s in record["steps"]] == ["netboot: install", "netboot: installed"]
        assert all(s["exit_code"] == 0 for s in record["steps"]), record["steps"]
        # Its next boot is from its disk, and its preseed (with its private host key) is gone.
        assert "\nexit\n" in on_mirror(f"cat /srv/sovinfra/netboot/hosts/{FILE}.ipxe")
        assert on_mirror(f"ls /srv/sovinfra/netboot/hosts/{FILE}.preseed 2>/dev/null || true").strip() == ""
        # The key it made is the one pinned for the server's address.
        public = (
            hostkeys.store(paths.project_root() / "roles") / HOST / f"{hostkeys.KEY_NAME}.pub"
        ).read_text()
        pinned = (paths.lab_dir() / "known_hosts").read_text()
        assert f"{address} {' '.join(public.split()[:2])}" in pinned.splitlines()
    finally:
        invoke("bmc", "power", "off", "-i", str(site.inventory), "--vault-password-file", str(site.vault),
               "--limit", HOST)  # fmt: skip
        known = paths.lab_dir() / "known_hosts"
        subprocess.run(["ssh-keygen", "-q", "-R", address, "-f", str(known)], check=False)
        known.with_name("known_hosts.old").unlink(missing_ok=True)
        shutil.rmtree(hostkeys.store(paths.project_root() / "roles") / HOST, ignore_errors=True)
