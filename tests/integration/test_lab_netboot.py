"""Bare metal from nothing, in the lab: the netboot role on the mirror host (dnsmasq on the lab network,
iPXE, the OS image made from the site snapshot and its installer), and two blank libvirt VMs on the same
network (SeaBIOS and OVMF), driven through their emulated BMC (sushy-tools): `sovinfra provision`
installs them from the site, they come back answering with the host keys sovinfra made, and the site
converges on them; nothing leaves the lab (its egress counter is unchanged). Then proxy-DHCP beside the
network's own DHCP server, the role's idempotence, and the refusal to erase a server that answers as
another machine."""

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
    def file(self) -> str:  # how the netboot service names its script and files
        return self.mac.replace(":", "-")

    def address(self) -> str:
        return str(config.subnet().network_address + self.address_offset)


# A BIOS server (SeaBIOS, network boot by the NIC's own iPXE ROM) and a UEFI one (OVMF's own PXE, the NIC's
# ROM off: the firmware asks DHCP as an EFI client and must be sent snponly.efi).
SERVERS = (Server("pxe1", "52:54:00:5f:02:01", "bios", 150), Server("pxe2", "52:54:00:5f:02:02", "uefi", 151))
HOST, FILE = SERVERS[0].name, SERVERS[0].file
BOOT_BUDGET_S = 900  # TCG: iPXE, the installer's kernel and initramfs over TFTP, then its boot
INSTALL_BUDGET_MIN = 40  # TCG, both at once: network boot, install, first boot from the disk
DISK_GIB = 24  # sparse; preflight wants 20 GiB free on /
MEMORY_MIB = 1024
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
                    f"sovinfra-test-{x.name}-{os.getpid()}",
                    work,
                    nic,
                    MEMORY_MIB,
                    consoles[x.name],
                    x.firmware,
                    DISK_GIB,
                )
            )
        # One Redfish service for both (each server names its system: bmc_system_id).
        systems = {name: virsh("domuuid", domain) for name, domain in domains.items()}
        emulator = bmc_emulator.start(
            work / "bmc", "127.0.0.1", 18000 + os.getpid() % 1000, USER, PASSWORD, list(systems.values())
        )
        try:
            inventory, vault = _write_inventory(work / "inventory", emulator.url, emulator.ca_file, systems)
            # As an operator adds network boot to a site: a snapshot that holds the OS image's packages, then
            # the mirror host converged onto it (its netboot role, which has the image made, too).
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


def on_server(server: Server, command: str) -> str:
    """A command on an installed server, over ssh checking the key pinned for it (the lab's known_hosts)."""
    lab = paths.lab_dir()
    argv = ["ssh", "-i", str(lab / "id_ed25519"), "-o", f"UserKnownHostsFile={lab / 'known_hosts'}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20",
            f"root@{server.address()}", command]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120).stdout


@dataclass
class Provisioned:
    code: int
    out: str
    log: str  # the netboot service's, from the provision on
    consoles: dict[str, str]
    egress: tuple[int | None, int | None]  # the lab's egress counter before and after
    image: dict  # the record of the image installed


@pytest.fixture(scope="class")
def provisioned(site: Site) -> Iterator[Provisioned]:
    """`sovinfra provision` of both blank servers at once; afterwards both are off, their made keys and
    pins gone."""
    from sovinfra.cli.mirror import default_store
    from sovinfra.mirror import apt_snapshots
    from sovinfra.netboot import image

    snapshot = apt_snapshots.current(default_store()) or ""
    made = image.load(image.image_dir(default_store(), snapshot))
    assert made and made["snapshot"] == snapshot, made  # the site fixture's converge had it made
    egress_before = manager.egress_packets()
    started = time.time()
    bmc = ("-i", str(site.inventory), "--vault-password-file", str(site.vault))
    try:
        code, out = invoke(
            "provision", *(x.name for x in SERVERS), "--yes", "--budget-min", str(INSTALL_BUDGET_MIN), *bmc,
            "--json",
        )  # fmt: skip
        consoles = {x.name: site.consoles[x.name].read_text(errors="replace") for x in SERVERS}
        yield Provisioned(
            code, out, netboot_log(started), consoles, (egress_before, manager.egress_packets()), made
        )
    finally:
        invoke("bmc", "power", "off", *bmc, "--limit", ",".join(x.name for x in SERVERS))
        known = paths.lab_dir() / "known_hosts"
        for server in SERVERS:
            subprocess.run(["ssh-keygen", "-q", "-R", server.address(), "-f", str(known)], check=False)
            shutil.rmtree(hostkeys.store(paths.project_root() / "roles") / server.name, ignore_errors=True)
        known.with_name("known_hosts.old").unlink(missing_ok=True)
        (site.inventory / "sovinfra.lock").unlink(missing_ok=True)


class TestProvision:
    def test_blank_servers_are_installed_from_the_site_through_their_bmcs(
        self, provisioned: Provisioned
    ) -> None:
        """Both servers at once, BIOS and UEFI: made keys pinned, one network boot each through its BMC,
        the image installed from the snapshot, their next boot from their disks, each answering with its
        planted key, then the site converged on them. The chain each took is the netboot service's log."""
        p, log, snapshot = provisioned, provisioned.log, provisioned.image["snapshot"]
        record = json.loads(p.out[p.out.index("{") :])
        assert p.code == 0 and record["ok"], (
            p.out[-4000:], log[-3000:], {h: c[-2500:] for h, c in p.consoles.items()},
        )  # fmt: skip
        # The first to take its files is let go while the other installs (its next boot is its disk).
        names = [s["step"] for s in record["steps"]]
        assert names[0] == "netboot: install" and names[-2:] == ["netboot: installed", "converge"], names
        assert set(names[1:-2]) <= {"netboot: some installed"}, names
        for server in SERVERS:
            assert record["netboot"][server.name]["stage"] == "files", record["netboot"]
            # Installed once: no server booted into a second install while the other was still at it.
            taken = re.findall(
                rf"sent \S*/hosts/{server.file}\.install to {re.escape(server.address())}\b", log
            )
            assert len(taken) == 1, taken
            # The chain: DHCP for this MAC, (UEFI firmware: iPXE for EFI), iPXE's script, the server's own,
            # the installer, the server's files, the image: each from the netboot host, to this server.
            assert re.search(rf"DHCPACK\(host0\) \S+ {server.mac} {server.name}", log), log[-3000:]
            chain = ["boot.ipxe", f"hosts/{server.file}.ipxe", f"images/{snapshot}/linux",
                     f"images/{snapshot}/installer.img", f"hosts/{server.file}.install",
                     f"images/{snapshot}/rootfs.tar.zst"]  # fmt: skip
            for sent in (["snponly.efi"] if server.firmware == "uefi" else []) + chain:
                assert re.search(rf"sent \S*/{re.escape(sent)} to {re.escape(server.address())}", log), sent
            assert "sovinfra-installer: installed; rebooting" in p.consoles[server.name]
            # Answering with the key sovinfra made (StrictHostKeyChecking against the pinned one), as
            # itself, on the image's kernel, with only the one host key it was given (the image carries
            # none), GRUB's UEFI loader on the ESP whatever the firmware (one disk layout boots either), its
            # packages from the site snapshot only.
            sources = "cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null"
            facts = on_server(
                server, "hostname; uname -r; ls /etc/ssh | grep '^ssh_host_' | tr '\\n' ' '; echo; "
                f"ls /boot/efi/EFI/BOOT; findmnt -n -o FSTYPE /; {sources} | grep -E '^(URIs:|deb) ' || true",
            ).splitlines()  # fmt: skip
            assert facts[:5] == [
                server.name, p.image["kernel"], "ssh_host_ed25519_key ssh_host_ed25519_key.pub ",
                "BOOTX64.EFI", "ext4",
            ], facts  # fmt: skip
            assert facts[5:] and all(line.endswith("/packages/site") for line in facts[5:]), facts
        # The image went over the lab network only.
        assert p.egress[0] is not None and p.egress[1] == p.egress[0]
        # Their next boot is from their disks, and their files (with their private host keys) are gone.
        for server in SERVERS:
            assert "\nexit 1\n" in on_mirror(f"cat /srv/sovinfra/netboot/hosts/{server.file}.ipxe")
        assert on_mirror("ls /srv/sovinfra/netboot/hosts/ | grep -c '[.]install$' || true").strip() == "0"

    def test_a_server_provisioned_again_comes_back_as_the_lock_says(
        self, site: Site, provisioned: Provisioned
    ) -> None:
        """The lock taken with both servers installed; pxe1 erased and installed again (its pinned key is
        the one made for it: no --other-machine); then drift against the lock finds nothing on it."""
        assert provisioned.code == 0, "the servers were not provisioned"
        common = ("-i", str(site.inventory), "--vault-password-file", str(site.vault))
        code, out = invoke("lock", "-i", str(site.inventory))
        assert code == 0, out
        before = on_server(SERVERS[0], "dpkg-query -W -f '${Package}=${Version}\\n' | sort")
        code, out = invoke(
            "provision", HOST, "--yes", "--budget-min", str(INSTALL_BUDGET_MIN), *common, "--json"
        )
        assert code == 0, out[-4000:]
        assert on_server(SERVERS[0], "dpkg-query -W -f '${Package}=${Version}\\n' | sort") == before
        code, out = invoke("drift", "-i", str(site.inventory), "--limit", HOST, "--json")
        drift = json.loads(out[out.index("{") :])
        assert code == 0 and drift["items"] == [] and drift["unreachable"] == {}, drift


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
    iPXE where to boot from, and the chain to the installer and the server's files is the same."""
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
            files_sent = re.compile(
                rf"sent \S*/hosts/{server.file}\.install to {re.escape(server.address())}"
            )
            deadline = time.monotonic() + BOOT_BUDGET_S
            log = ""
            while time.monotonic() < deadline and not files_sent.search(log):
                time.sleep(10)
                log = netboot_log(booted)
            assert files_sent.search(log), (
                f"no server files fetched\n{log[-3000:]}\n{site_log.read_text()[-2000:]}"
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
        for sent in ("boot.ipxe", f"hosts/{server.file}.ipxe", "linux", "installer.img"):
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
    assert "kernel" not in script and "\nexit 1\n" in script
    assert on_mirror(f"ls /srv/sovinfra/netboot/hosts/{FILE}.install 2>/dev/null || true").strip() == ""
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
