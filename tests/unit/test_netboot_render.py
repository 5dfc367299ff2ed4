"""The netboot role's files, rendered with Ansible's own Templar for a site with a BIOS and a UEFI server:
dnsmasq answers DHCP only for listed MACs on the provisioning interface (and dnsmasq itself accepts the
file), firmware gets the iPXE build for its boot mode, a server to install gets the installer of the site's
OS image and its own files, every other known server is sent to its disk."""

from __future__ import annotations

import base64
import json
import os
import re
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
        "disk": "/dev/nvme0n1", "firmware": "uefi", "timezone": "UTC", "install": True,
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


IMAGE = {"dir": "/var/lib/sovinfra/mirror/netboot/" + SNAPSHOT, "kernel": "6.1.0-57-amd64", "built": False,
         "sha256": {"linux": "1" * 64, "installer.img": "2" * 64, "rootfs.tar.zst": "3" * 64}}  # fmt: skip
INSTALLER = ROOT / "sovinfra" / "netboot" / "installer" / "sovinfra"


def test_the_server_to_install_gets_the_installer_every_other_its_disk() -> None:
    t = templar(["gpu1"])
    found = clients(t)
    install = render(
        t, "host.ipxe.j2", client=found["gpu1"], __netboot_image_made={"stdout": json.dumps(IMAGE)}
    )
    assert install.startswith("#!ipxe\n")
    kernel = next(line for line in install.splitlines() if line.startswith("kernel "))
    args = dict(a.split("=", 1) for a in kernel.split()[2:])
    assert kernel.split()[1] == f"/images/{SNAPSHOT}/linux"
    # What the installer reads (sovinfra/netboot/installer/sovinfra): all from the netboot host, the image
    # checked against the sha256 its record holds.
    assert args["sovinfra.server"] == "10.0.9.1" and args["sovinfra.disk"] == "/dev/nvme0n1"
    assert (
        args["sovinfra.image"] == f"images/{SNAPSHOT}/rootfs.tar.zst" and args["sovinfra.sha256"] == "3" * 64
    )
    assert args["sovinfra.files"] == "hosts/52-54-00-aa-00-01.install"
    assert args["ip"] == "dhcp" and args["BOOTIF"] == "01-${netX/mac:hexhyp}"
    for name in ("server", "image", "sha256", "files", "disk"):  # each one the script requires
        assert f"sovinfra.{name}=*)" in INSTALLER.read_text()
    initrds = [line.split() for line in install.splitlines() if line.startswith("initrd ")]
    assert initrds == [["initrd", "--name", "installer.img", f"/images/{SNAPSHOT}/installer.img"]]
    # Under UEFI the kernel's EFI stub loads it itself, by this name.
    assert args["initrd"] == "installer.img" and "\nboot\n" in install
    local = render(t, "host.ipxe.j2", client=found["gpu2"])
    assert [line for line in local.splitlines() if line and not line.startswith("#")] == ["exit 1"]
    boot = render(t, "boot.ipxe.j2")
    assert "chain hosts/${netX/mac:hexhyp}.ipxe" in boot
    # Back to the firmware with a failure: UEFI goes on to its next boot option only after one.
    assert [line for line in boot.splitlines() if line.startswith("exit")] == ["exit 1"]


def plant(server_files: str, root: Path) -> subprocess.CompletedProcess[str]:
    """The installer's own planting step (its shell function, run by sh) onto `root`."""
    (root.parent / "files").write_text(server_files)
    # sovinfra_fail waits forever on a server: here its wait ends the shell (exit 3).
    script = (
        f'sleep() {{ exit 3; }}; . "{INSTALLER}"; rootmnt="{root}"; sovinfra_plant "{root.parent / "files"}"'
    )
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)


def test_the_installer_plants_the_servers_name_keys_and_time_zone(tmp_path: Path) -> None:
    from sovinfra.netboot import hostkeys

    keys = tmp_path / "hostkeys"
    (keys / "gpu2").mkdir(parents=True)
    private = keys / "gpu2" / hostkeys.KEY_NAME
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(private)], check=True)
    t = templar(["gpu1", "gpu2"], keys)
    root = tmp_path / "target"
    (root / "usr/share/zoneinfo/Europe").mkdir(parents=True)
    (root / "usr/share/zoneinfo/Europe/Berlin").write_text("TZif")
    (root / "etc").mkdir()
    done = plant(render(t, "server.install.j2", client=clients(t)["gpu2"]), root)
    assert done.returncode == 0, done.stderr
    assert (root / "etc/hostname").read_text() == "gpu2\n"
    assert "10.0.9.12 gpu2" in (root / "etc/hosts").read_text().splitlines()
    assert (root / "root/.ssh/authorized_keys").read_text() == (
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample control\n"
    )
    assert (root / "root/.ssh/authorized_keys").stat().st_mode & 0o777 == 0o600
    planted = root / "etc/ssh/ssh_host_ed25519_key"
    assert planted.read_bytes() == private.read_bytes() and planted.stat().st_mode & 0o777 == 0o600
    assert (root / "etc/ssh/ssh_host_ed25519_key.pub").read_text() == private.with_suffix(".pub").read_text()
    assert os.readlink(root / "etc/localtime") == "/usr/share/zoneinfo/Europe/Berlin"
    # A server whose key was never made gets none: its own would be unknown, so never trusted.
    other = tmp_path / "other"
    (other / "etc").mkdir(parents=True)
    done = plant(render(t, "server.install.j2", client=clients(t)["gpu1"]), other)
    assert done.returncode == 0, done.stderr
    assert not list((other / "etc").glob("ssh/*")) and (other / "etc/hostname").read_text() == "gpu1\n"


def test_the_installer_refuses_a_path_outside_the_new_root(tmp_path: Path) -> None:
    root = tmp_path / "target"
    root.mkdir()
    done = plant(f"../escaped 0644 {base64.b64encode(b'x').decode()}\n", root)
    assert done.returncode == 3 and "FAILED" in done.stderr and "is not inside the new root" in done.stderr
    assert not (tmp_path / "escaped").exists()


def test_only_other_snapshots_images_and_debian_installers_files_are_removed() -> None:
    stale = re.compile(str(templar([]).template(trusted("{{ __netboot_stale }}"))))
    root = "/srv/sovinfra/netboot"
    gone = [f"{root}/images/20261101T000000Z", f"{root}/debian-installer", f"{root}/site-keyring",
            f"{root}/site.gpg"]  # fmt: skip
    kept = [f"{root}/images/{SNAPSHOT}", f"{root}/images", f"{root}/hosts", f"{root}/boot.ipxe",
            f"{root}/undionly.kpxe", f"{root}/snponly.efi", f"{root}/site.gpgx"]  # fmt: skip
    assert [p for p in gone + kept if stale.search(p)] == gone
