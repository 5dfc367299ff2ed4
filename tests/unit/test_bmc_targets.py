"""BMC and netboot keys of the inventory (pure): the formats the validator and the code share, and the
targets `sovinfra bmc` builds, every problem of every host named by file and key before any BMC is asked."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret

from sovinfra import paths
from sovinfra.bmc import targets
from sovinfra.errors import UserError
from sovinfra.inventory import formats, model, site

VAULT = VaultLib([("default", VaultSecret(b"pw"))])


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("10.0.8.11", "https://10.0.8.11"),
        ("bmc-r1-n1.mgmt.example", "https://bmc-r1-n1.mgmt.example"),
        ("10.0.8.11:8443", "https://10.0.8.11:8443"),
        ("https://10.0.8.11:8443/", "https://10.0.8.11:8443"),
        ("https://[fd00::11]:443", "https://[fd00::11]:443"),
    ],
)
def test_bmc_addresses_become_https_urls(given: str, url: str) -> None:
    assert formats.bmc_url(given) == url


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("http://10.0.8.11", "only https"),
        ("ftp://10.0.8.11", "only https"),
        ("https://10.0.8.11/redfish/v1", "only the host and port"),
        ("https://admin@10.0.8.11", "only the host and port"),
        ("10.0.8.11:99999", "out of range"),
        ("bmc_r1!", "neither an IP address"),
        ("", "must be the BMC's host"),
        (8443, "must be the BMC's host"),
    ],
)
def test_bad_bmc_addresses_say_why(given: object, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        formats.bmc_url(given)


def test_macs_and_disks() -> None:
    assert formats.mac("52-54-00-AB-CD-EF") == "52:54:00:ab:cd:ef"
    for bad in ("52:54:00:ab:cd", "52:54:00:ab:cd:eg", "01:00:5e:00:00:01", 525400, ""):
        with pytest.raises(ValueError):
            formats.mac(bad)
    for good in ("/dev/sda", "/dev/vda", "/dev/nvme0n1", "/dev/disk/by-id/nvme-SAMSUNG_MZQL2_S64G_1"):
        assert formats.disk(good) == good
    for bad in ("/dev/sda1", "/dev/nvme0n1p2", "sda", "/dev/../etc/passwd", None):
        with pytest.raises(ValueError, match="not a whole disk"):
            formats.disk(bad)


def _site(tmp: Path, node1: dict, node2: dict | None = None) -> model.Inventory:
    hosts = {
        "all": {
            "children": {
                "gpu_nodes": {"hosts": {"node1": {"ansible_host": "10.0.0.11"}, "node2": None}},
                "model_mirror": {"hosts": {}},
                "inference": {"hosts": {}},
            }
        }
    }
    (tmp / "host_vars").mkdir(parents=True)
    (tmp / "hosts.yml").write_text(yaml.safe_dump(hosts))
    for host, values in (("node1", node1), ("node2", node2)):
        if values is not None:
            (tmp / "host_vars" / f"{host}.yml").write_text(yaml.safe_dump(values))
    return model.load(tmp)


def _role() -> dict:
    return targets.role_defaults(paths.project_root() / "roles")


def test_targets_resolve_the_ca_beside_the_file_that_names_it_and_decrypt_the_password(
    tmp_path: Path,
) -> None:
    inv = _site(tmp_path, {"bmc_address": "10.0.8.11", "bmc_user": "admin", "bmc_ca_file": "../ca.pem"})
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    vaulted = VAULT.encrypt("s3cret").decode()
    (tmp_path / "host_vars" / "node1.yml").write_text(
        (tmp_path / "host_vars" / "node1.yml").read_text()
        + "bmc_password: !vault |\n"
        + "".join(f"  {line}\n" for line in vaulted.splitlines())
    )
    inv = model.load(tmp_path)
    (t,) = targets.collect(inv, ["node1"], _role(), VAULT)
    assert (t.url, t.user, t.password, t.system_id, t.firmware) == (
        "https://10.0.8.11",
        "admin",
        "s3cret",
        "",
        "uefi",  # the netboot role's default firmware mode
    )
    assert Path(t.ca_file) == tmp_path / "host_vars" / ".." / "ca.pem" and t.timeout_s == 30
    assert "s3cret" not in repr(t)
    with pytest.raises(UserError, match="vault-encrypted: pass --vault-password-file"):
        targets.collect(inv, ["node1"], _role(), None)


def test_every_problem_of_every_host_is_listed_with_its_file_and_key(tmp_path: Path) -> None:
    inv = _site(
        tmp_path,
        {"bmc_address": "http://10.0.8.11", "bmc_user": "admin", "bmc_password": "x", "bmc_protocol": "ipmi"},
        {"bmc_user": "admin", "bmc_timeout_s": 0, "netboot_firmware": "efi"},
    )
    with pytest.raises(UserError) as caught:
        targets.collect(inv, ["node1", "node2"], _role(), None)
    text = str(caught.value)
    node1, node2 = tmp_path / "host_vars" / "node1.yml", tmp_path / "host_vars" / "node2.yml"
    for expected in (
        f"{node1}: bmc_address (host node1): 'http://10.0.8.11': only https",
        f"{node1}: bmc_protocol (host node1): 'ipmi' is not supported",
        f"{tmp_path / 'hosts.yml'}: bmc_address (host node2): must be the BMC's host",
        f"{tmp_path / 'hosts.yml'}: bmc_password (host node2): not set",
        f"{node2}: bmc_timeout_s (host node2): must be a positive number",
        f"{node2}: netboot_firmware (host node2): 'efi' is not bios or uefi",
        "nothing was powered",
    ):
        assert expected in text
    assert targets.with_bmc(inv, ["node1", "node2"]) == ["node1"]


def test_the_inventory_check_judges_bmc_and_netboot_formats(tmp_path: Path) -> None:
    _site(
        tmp_path,
        {"bmc_address": "http://10.0.8.11", "netboot_mac": "52:54:00:zz:00:01", "netboot_disk": "sda"},
    )
    with pytest.raises(UserError) as caught:
        site.load_checked(tmp_path)
    text = str(caught.value)
    node1 = tmp_path / "host_vars" / "node1.yml"
    assert f"{node1}: bmc_address: 'http://10.0.8.11': only https" in text
    assert f"{node1}: netboot_mac: '52:54:00:zz:00:01' is not a MAC address" in text
    assert f"{node1}: netboot_disk: 'sda' is not a whole disk" in text
