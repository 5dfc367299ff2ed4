"""The Vagrant lab's plan (pure): VM names, addresses and identities, what the Vagrantfile reads, what is
refused before anything is made, the VMs in the lab's inventory, and the stand-in DKMS module's package."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from sovinfra.lab import box, nvidia_repo, vm
from sovinfra.lab import inventory as lab_inventory
from sovinfra.lab.state import HostState, LabState, VmState
from sovinfra.mirror import os_tree


def test_vms_take_stable_addresses_and_macs_clear_of_the_containers() -> None:
    plans = vm.plan(3, "10.213.7.0/24")
    assert [(p.name, p.address, p.mac) for p in plans] == [
        ("vm1", "10.213.7.101", "52:54:00:5f:00:01"),
        ("vm2", "10.213.7.102", "52:54:00:5f:00:02"),
        ("vm3", "10.213.7.103", "52:54:00:5f:00:03"),
    ]
    # Like the containers' hosts: the lab's subnet and nothing else (no gateway).
    network = vm.network_file("10.213.7.101", 24)
    assert "Address=10.213.7.101/24" in network and "Gateway" not in network and "Name=eth0" in network


def test_the_vagrantfile_settings_name_the_box_keys_and_identity_items() -> None:
    doc = vm.settings(vm.plan(1, "10.213.7.0/24"), "bookworm", 2, 2048)
    assert doc["box"] == box.name("bookworm") and doc["box"].startswith("sovinfra/bookworm-")
    assert doc["driver"] in ("kvm", "qemu") and doc["fw_cfg"] == box.FW_CFG
    (node,) = doc["nodes"]
    assert set(node["fw_cfg"]) == {"ssh_host_ed25519_key", "hostname", "network"}
    assert all(path.startswith(str(vm.vm_dir("vm1"))) for path in node["fw_cfg"].values())
    assert doc["playbook"].endswith("playbooks/site.yml") and json.dumps(doc)


def test_the_box_recipe_names_a_new_box_when_it_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    before = box.name("bookworm")
    assert before == box.name("bookworm") and before != box.name("trixie")
    monkeypatch.setattr(box, "PACKAGES", (*box.PACKAGES, "htop"))
    assert box.name("bookworm") != before


SNAPSHOT = box.Source("copy:///srv/store/packages/aptly/public/site", "20261204T120000Z", "")


def test_a_box_from_the_site_snapshot_is_its_own_box_per_snapshot_and_key(tmp_path: Path) -> None:
    archive = box.name("bookworm")
    assert box.name("bookworm", box.ARCHIVE) == archive  # the archive box's name did not move
    from_snapshot = box.name("bookworm", SNAPSHOT)
    assert from_snapshot != archive and from_snapshot.startswith("sovinfra/bookworm-")
    newer = box.Source(SNAPSHOT.url, "20261205T000000Z")
    assert box.name("bookworm", newer) != from_snapshot
    key_a, key_b = tmp_path / "a.gpg", tmp_path / "b.gpg"
    key_a.write_bytes(b"key a")
    key_b.write_bytes(b"key b")
    signed_a = box.Source(SNAPSHOT.url, SNAPSHOT.suite, str(key_a))
    assert box.name("bookworm", signed_a) != box.name(
        "bookworm", box.Source(SNAPSHOT.url, SNAPSHOT.suite, str(key_b))
    )
    assert box.box_dir("bookworm", signed_a) != box.box_dir("bookworm")


def test_mmdebstrap_takes_a_snapshot_by_its_id_checked_with_the_site_key() -> None:
    root = Path("/tmp/rootfs")
    argv = os_tree.bootstrap_argv("bookworm", root, box.ARCHIVE, box.PACKAGES)
    assert argv[0] == "mmdebstrap" and argv[-3:] == ["bookworm", "/tmp/rootfs", box.ARCHIVE.url]
    signed = box.Source(SNAPSHOT.url, SNAPSHOT.suite, "/srv/store/keys/site.gpg")
    argv = os_tree.bootstrap_argv("bookworm", root, signed, box.PACKAGES)
    assert argv[-3:] == [
        "20261204T120000Z",
        "/tmp/rootfs",
        "deb [signed-by=/srv/store/keys/site.gpg] copy:///srv/store/packages/aptly/public/site "
        "20261204T120000Z main",
    ]
    assert "--variant=minbase" in argv and f"--include={','.join(box.PACKAGES)}" in argv


def test_without_a_published_snapshot_the_box_comes_from_debians_archive_saying_why(tmp_path: Path) -> None:
    said: list[str] = []
    assert vm.box_source(tmp_path, True, said.append) == box.ARCHIVE
    assert said == [f"the box comes from Debian's archive: no package snapshot is published in {tmp_path}"]
    said.clear()
    assert vm.box_source(tmp_path, False, said.append) == box.ARCHIVE and said == []  # an --apt-proxy lab


def test_everything_in_the_way_is_said_before_anything_is_made() -> None:
    found = vm.problems(0, 0, 100, LabState())
    assert any("--nodes must be between 1 and 8, got 0" in p for p in found), found
    assert any("--cpus must be at least 1" in p for p in found), found
    assert any("no lab is up" in p for p in found), found
    lab = LabState(
        subnet="10.213.7.0/24", hosts={"mirror1": HostState("mirror1", "10.213.7.10", ["model_mirror"])}
    )
    found = vm.problems(2, 2, 10**7, lab)
    assert any(p.startswith("2 VM(s) of 10000000 MiB need") for p in found), found
    assert not any("no lab is up" in p for p in found)


def test_vms_join_the_lab_inventory_as_the_box_user_with_their_own_kernel() -> None:
    lab = LabState(subnet="10.213.7.0/24")
    lab.vms["vm1"] = VmState("vm1", "10.213.7.101", list(vm.GROUPS), "vagrant", "/k", "6.1.0-50-amd64")
    groups = lab_inventory.hosts_document(lab)["all"]["children"]
    entry = groups["gpu_nodes"]["hosts"]["vm1"]
    assert entry == {
        "ansible_host": "10.213.7.101",
        "ansible_user": "vagrant",
        "ansible_ssh_private_key_file": "/k",
        "ansible_become": True,
        "nvidia_driver_kernel_release": "6.1.0-50-amd64",
    }
    assert "vm1" not in (groups["inference"]["hosts"] or {})  # the kernel side only


def test_the_dkms_standin_builds_a_real_module_where_the_kernel_has_headers() -> None:
    packages = {p.name: p for p in nvidia_repo.driver_packages("570.133.20", b"\x7fELF")}
    dkms = packages["nvidia-kernel-open-dkms"]
    assert dkms.depends == ("dkms",)
    conf = dkms.files["/usr/src/nvidia-570.133.20/dkms.conf"][1].decode()
    assert 'BUILT_MODULE_NAME[0]="nvidia"' in conf and "STANDIN_VERSION=570.133.20" in conf
    assert "MODULE_VERSION(STANDIN_VERSION)" in dkms.files["/usr/src/nvidia-570.133.20/nvidia.c"][1].decode()
    postinst = dkms.scripts["postinst"].decode()
    assert 'dkms install -m nvidia -v 570.133.20 -k "$kernel"' in postinst
    assert 'if [ -e "/lib/modules/$kernel/build" ]' in postinst  # a container's kernel: nothing to build
    for script in dkms.scripts.values():
        assert subprocess.run(["sh", "-n"], input=script, check=False).returncode == 0


def test_pinned_keys_replace_only_their_own_block(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(f"10.0.0.5 ssh-ed25519 AAAAsite\n10.213.7.101 ssh-ed25519 AAAAold {vm.MARK}\n")
    vm._mark(known, ["10.213.7.101 ssh-ed25519 AAAAnew"])
    assert known.read_text() == f"10.0.0.5 ssh-ed25519 AAAAsite\n10.213.7.101 ssh-ed25519 AAAAnew {vm.MARK}\n"
    vm._mark(known, [])
    assert known.read_text() == "10.0.0.5 ssh-ed25519 AAAAsite\n"
