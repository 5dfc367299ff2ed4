"""The netboot role's files, rendered with Ansible's own Templar for a site with a BIOS and a UEFI server:
dnsmasq answers DHCP only for listed MACs on the provisioning interface (and dnsmasq itself accepts the
file), firmware gets the iPXE build for its boot mode, a server to install gets the installer with its
preseed, every other known server is sent to its disk, and the preseed installs from the site snapshot."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from tests.conftest import ROOT, ansible_plugins, trusted

ROLE = ROOT / "roles" / "netboot"
LOADER = DataLoader()
SNAPSHOT = "20261201T000000Z"
HOSTVARS: dict[str, dict[str, Any]] = {
    "mirror1": {"ansible_host": "10.0.0.5"},
    "gpu1": {"ansible_host": "10.0.9.11", "netboot_mac": "52-54-00-AA-00-01", "netboot_disk": "/dev/nvme0n1"},
    "gpu2": {
        "ansible_host": "10.0.0.12",
        "netboot_address": "10.0.9.12",
        "netboot_mac": "52:54:00:aa:00:02",
        "netboot_disk": "/dev/sda",
        "netboot_firmware": "bios",
        "netboot_timezone": "Europe/Berlin",
    },
    "gpu3": {"ansible_host": "10.0.9.13"},  # no MAC: unknown to DHCP
}


def load(path: Path) -> Any:
    return LOADER.load_from_file(str(path), trusted_as_template=True)


def templar(install: list[str], keys: Path | None = None) -> Templar:
    ansible_plugins()  # the role reads its own defaults with the file lookup
    variables: dict[str, Any] = {
        **load(ROLE / "defaults" / "main.yml"),
        **load(ROLE / "vars" / "main.yml"),
        "role_path": str(ROLE),
        "ansible_managed": "Managed by sovinfra",
        "inventory_hostname": "mirror1",
        "site_mirror_host": "10.0.0.5",
        "__site_apt_snapshot_id": SNAPSHOT,
        "netboot_interface": "prov-0",
        "netboot_install": install,
        "netboot_host_keys_dir": str(keys or "/nonexistent"),
        "netboot_authorized_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample control"],
        "ansible_facts": {
            "prov_0": {
                "ipv4": {
                    "address": "10.0.9.1",
                    "netmask": "255.255.255.0",
                    "network": "10.0.9.0",
                    "prefix": "24",
                }
            }
        },
        "groups": {"all": sorted(HOSTVARS), "netboot": ["mirror1"]},
        "hostvars": HOSTVARS,
    }
    return Templar(loader=LOADER, variables=variables)


def render(t: Templar, template: str, **extra: Any) -> str:
    if extra:
        t = t.copy_with_new_env(available_variables={**t.available_variables, **extra})
    return str(t.template(trusted((ROLE / "templates" / template).read_text())))


def assert_dnsmasq_accepts(conf: str, tmp_path: Path) -> None:
    """dnsmasq itself checks the rendered file (as the role's `validate` does)."""
    if not shutil.which("dnsmasq"):
        pytest.skip("dnsmasq is not installed (scripts/setup installs dnsmasq-base)")
    (tmp_path / "dnsmasq.conf").write_text(conf)
    checked = subprocess.run(
        ["dnsmasq", "--test", f"--conf-file={tmp_path / 'dnsmasq.conf'}"], capture_output=True, text=True
    )
    assert checked.returncode == 0 and "syntax check OK" in checked.stderr, checked.stderr


def clients(t: Templar) -> dict[str, dict[str, Any]]:
    return {c["host"]: dict(c) for c in t.template(trusted("{{ __netboot_clients }}"))}


def test_only_servers_with_a_mac_are_known_with_their_own_or_the_roles_values() -> None:
    found = clients(templar(["gpu1"]))
    assert sorted(found) == ["gpu1", "gpu2"]
    assert found["gpu1"] | {} == {
        "host": "gpu1", "mac": "52:54:00:aa:00:01", "file": "52-54-00-aa-00-01", "address": "10.0.9.11",
        "disk": "/dev/nvme0n1", "firmware": "uefi", "locale": "en_US.UTF-8", "keymap": "us",
        "timezone": "UTC", "install": True,
    }  # fmt: skip
    assert (found["gpu2"]["address"], found["gpu2"]["firmware"], found["gpu2"]["install"]) == (
        "10.0.9.12",
        "bios",
        False,
    )


def test_dnsmasq_answers_only_listed_macs_on_the_provisioning_interface(tmp_path: Path) -> None:
    conf = render(templar(["gpu1"]), "dnsmasq.conf.j2")
    lines = [line for line in conf.splitlines() if line and not line.startswith("#")]
    # Its own DNS for the installer (which asks for one): local names only, nothing forwarded.
    assert {"no-resolv", "local=/#/", "dhcp-option=option:dns-server,10.0.9.1"} <= set(lines)
    assert not [line for line in lines if line.startswith("server=")]
    assert "interface=prov-0" in lines and "bind-interfaces" in lines and "enable-tftp=prov-0" in lines
    assert "dhcp-range=10.0.9.0,static,255.255.255.0,1h" in lines  # no pool: unknown MACs get nothing
    assert [line for line in lines if line.startswith("dhcp-host=")] == [
        "dhcp-host=52:54:00:aa:00:01,10.0.9.11,gpu1",
        "dhcp-host=52:54:00:aa:00:02,10.0.9.12,gpu2",
    ]
    assert "dhcp-option=option:router" in lines  # an empty router option: no default route
    assert "dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe" in lines
    assert "dhcp-boot=tag:!ipxe,tag:efi64,snponly.efi" in lines
    assert "dhcp-boot=tag:ipxe,boot.ipxe" in lines
    assert_dnsmasq_accepts(conf, tmp_path)


def test_as_a_proxy_beside_the_networks_dhcp_it_hands_out_no_address_router_or_dns(tmp_path: Path) -> None:
    """netboot_dhcp: proxy (its answers on the wire: tests/integration/test_netboot_proxy_dhcp.py)."""
    conf = render(templar(["gpu1"]), "dnsmasq.conf.j2", netboot_dhcp="proxy")
    lines = [line for line in conf.splitlines() if line and not line.startswith("#")]
    assert "dhcp-range=10.0.9.0,proxy,255.255.255.0" in lines
    assert [line for line in lines if line.startswith("dhcp-host=")] == [
        "dhcp-host=52:54:00:aa:00:01",
        "dhcp-host=52:54:00:aa:00:02",
    ]
    assert "dhcp-ignore=tag:!known" in lines  # a MAC the inventory does not list gets nothing
    assert not [line for line in lines if line.startswith(("dhcp-option=", "dhcp-boot="))]
    services = [line for line in lines if line.startswith("pxe-service=")]
    assert 'pxe-service=tag:!ipxe,x86PC,"sovinfra: iPXE",undionly.kpxe' in services
    assert 'pxe-service=tag:!ipxe,BC_EFI,"sovinfra: iPXE",snponly.efi' in services
    assert 'pxe-service=tag:ipxe,x86-64_EFI,"sovinfra: boot script",boot.ipxe' in services
    assert len(services) == 6 and "interface=prov-0" in lines and "bind-interfaces" in lines
    assert_dnsmasq_accepts(conf, tmp_path)


def test_the_server_to_install_gets_the_installer_every_other_its_disk() -> None:
    t = templar(["gpu1"])
    found = clients(t)
    install = render(t, "host.ipxe.j2", client=found["gpu1"])
    assert install.startswith("#!ipxe\n")
    kernel = next(line for line in install.splitlines() if line.startswith("kernel "))
    assert "url=tftp://10.0.9.1/hosts/52-54-00-aa-00-01.preseed" in kernel
    assert "auto=true" in kernel and "priority=critical" in kernel and "hostname=gpu1" in kernel
    # Asked before the preseed is read (it comes over the network): a provisioning network has no router.
    assert "netcfg/no_default_route=true" in kernel and "netcfg/get_nameservers=10.0.9.1" in kernel
    initrds = [line.split() for line in install.splitlines() if line.startswith("initrd ")]
    # Laid over Debian's initrd, in this order: the installer's archive keyring is the site's key.
    assert [(i[2], i[3]) for i in initrds] == [
        ("initrd.gz", "/debian-installer/amd64/initrd.gz"),
        ("site-keyring.cpio.gz", "/debian-installer/amd64/site-keyring.cpio.gz"),
    ]
    # Under UEFI the kernel's EFI stub loads them itself, by these names, in the same order.
    assert [a.removeprefix("initrd=") for a in kernel.split() if a.startswith("initrd=")] == [
        i[2] for i in initrds
    ]
    assert kernel.split()[-1] == "---" and "\nboot\n" in install
    local = render(t, "host.ipxe.j2", client=found["gpu2"])
    assert [line for line in local.splitlines() if line and not line.startswith("#")] == ["exit"]
    boot = render(t, "boot.ipxe.j2")
    assert "chain hosts/${netX/mac:hexhyp}.ipxe" in boot


@pytest.mark.parametrize(("host", "label", "efi"), [("gpu1", "gpt", True), ("gpu2", "msdos", False)])
def test_the_preseed_installs_from_the_site_snapshot_on_the_named_disk(
    host: str, label: str, efi: bool
) -> None:
    t = templar(["gpu1", "gpu2"])
    client = clients(t)[host]
    preseed = render(t, "preseed.cfg.j2", client=client)
    settings = {
        " ".join(line.split()[:2]): line.split(maxsplit=3)[3] if len(line.split()) > 3 else ""
        for line in preseed.splitlines()
        if line and not line.startswith("#")
    }
    assert settings["d-i mirror/http/hostname"] == "10.0.0.5"
    assert settings["d-i mirror/http/directory"] == "/packages/site"
    assert settings["d-i mirror/suite"] == SNAPSHOT and settings["d-i mirror/udeb/suite"] == SNAPSHOT
    assert settings["d-i apt-setup/services-select"] == ""  # no security/updates from the internet
    assert settings["d-i debian-installer/allow_unauthenticated"] == "false"
    assert settings["d-i apt-setup/local0/key"] == "tftp://10.0.9.1/site.gpg"
    assert settings["d-i partman-auto/disk"] == client["disk"] == settings["d-i grub-installer/bootdev"]
    assert settings["d-i partman-partitioning/choose_label"] == label
    assert ("d-i partman-efi/non_efi_system" in settings) is efi
    assert settings["d-i time/zone"] == client["timezone"]
    assert settings["d-i passwd/root-password-crypted"] == "!"  # locked: keys only
    assert "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample control" in settings["d-i preseed/late_command"]


def test_the_preseed_plants_the_host_key_sovinfra_made_and_only_that(tmp_path: Path) -> None:
    from sovinfra.netboot import hostkeys

    keys = tmp_path / "hostkeys"
    (keys / "gpu1").mkdir(parents=True)
    private = keys / "gpu1" / hostkeys.KEY_NAME
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(private)], check=True)
    t = templar(["gpu1", "gpu2"], keys)
    found = clients(t)
    late = next(
        line
        for line in render(t, "preseed.cfg.j2", client=found["gpu1"]).splitlines()
        if line.startswith("d-i preseed/late_command")
    )
    encoded = base64.b64encode(private.read_bytes().rstrip(b"\n")).decode()  # its newline added back there
    assert f"echo '{encoded}' > /target/root/.hostkey.b64" in late
    assert private.with_suffix(".pub").read_text().strip() in late
    assert "{ base64 -d /root/.hostkey.b64; echo; } > /etc/ssh/ssh_host_ed25519_key" in late
    # A server whose key was never made gets none: its own would be unknown, so never trusted.
    other = render(t, "preseed.cfg.j2", client=found["gpu2"])
    assert ".hostkey.b64" not in other and "ssh_host_ed25519_key" not in other
