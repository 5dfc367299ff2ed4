"""Parsing node facts and mapping Ansible connection variables for pyinfra."""

from __future__ import annotations

from pathlib import Path

import paramiko
import yaml

from sovinfra.fleet import ssh_options
from sovinfra.fleet.facts import parse_node_facts
from sovinfra.inventory import model

CAPTURED = """os_name=Ubuntu 24.04.1 LTS
os_id=ubuntu
os_version=24.04
kernel=6.8.0-45-generic
arch=x86_64
cpus=224
cpu_model=Intel(R) Xeon(R) Platinum 8480+
mem_kib=2113403512
disk=nvme0n1:3840755982336:0
disk=sda:480103981056:1
nvidia_pci=0000:18:00.0:0x2330
nvidia_pci=0000:2a:00.0:0x2330
secure_boot=enabled
""".splitlines()


def test_parse_node_facts() -> None:
    facts = parse_node_facts(CAPTURED)
    assert facts["os_id"] == "ubuntu" and facts["os_version"] == "24.04"
    assert facts["cpus"] == 224 and facts["mem_kib"] == 2113403512
    assert facts["disks"][0] == {"name": "nvme0n1", "bytes": 3840755982336, "rotational": False}
    assert facts["disks"][1]["rotational"] is True
    assert facts["nvidia_pci"] == [
        {"bus_id": "0000:18:00.0", "device_id": "0x2330"},
        {"bus_id": "0000:2a:00.0", "device_id": "0x2330"},
    ]
    assert facts["secure_boot"] == "enabled"


def test_parse_tolerates_noise_and_missing_numbers() -> None:
    facts = parse_node_facts(["garbage", "cpus=", "mem_kib=abc"])
    assert facts["cpus"] is None and facts["mem_kib"] is None and facts["disks"] == []


def _inventory(tmp: Path, gpu1: dict) -> model.Inventory:
    (tmp / "host_vars").mkdir(parents=True)
    hosts = {"all": {"hosts": {"gpu1": None, "bastion": {"ansible_host": "192.0.2.5", "ansible_port": 2200}}}}
    (tmp / "hosts.yml").write_text(yaml.safe_dump(hosts))
    (tmp / "host_vars" / "gpu1.yml").write_text(yaml.safe_dump(gpu1))
    return model.load(tmp)


def test_one_reading_of_a_hosts_ssh_settings_keeps_host_key_checking(tmp_path: Path) -> None:
    inv = _inventory(
        tmp_path,
        {
            "ansible_host": "10.1.1.1",
            "ansible_port": 2222,
            "ansible_user": "ops",
            "ansible_ssh_private_key_file": "/k",
            "ansible_ssh_common_args": "-o UserKnownHostsFile=/lab/known_hosts -o StrictHostKeyChecking=no",
        },
    )
    opts = ssh_options.options(inv, "gpu1")
    data = ssh_options.pyinfra_data(opts)
    assert data["ssh_hostname"] == "10.1.1.1" and data["ssh_port"] == 2222 and data["ssh_user"] == "ops"
    assert data["ssh_known_hosts_file"] == "/lab/known_hosts" and data["ssh_key"] == "/k"
    assert data["ssh_strict_host_key_checking"] == "yes"  # whatever the inventory's ssh args say
    assert ssh_options.jump_config([opts]) == ""  # no jump host: no ssh_config
    bare = ssh_options.pyinfra_data(ssh_options.options(inv, "bastion"))
    assert bare["ssh_hostname"] == "192.0.2.5" and "ssh_known_hosts_file" not in bare


def test_a_jump_host_reaches_pyinfra_as_an_ssh_config_that_checks_its_key(tmp_path: Path) -> None:
    args = "-o UserKnownHostsFile=/lab/known_hosts -o ProxyJump=bastion"
    inv = _inventory(
        tmp_path, {"ansible_host": "10.1.1.1", "ansible_user": "root", "ansible_ssh_private_key_file": "/k",
                   "ansible_ssh_common_args": args},
    )  # fmt: skip
    opts = ssh_options.options(inv, "gpu1")
    assert opts.jump == ssh_options.Jump("192.0.2.5", 2200, "root", "/k", "/lab/known_hosts")
    config = paramiko.SSHConfig.from_text(ssh_options.jump_config([opts]))
    assert config.lookup("10.1.1.1")["proxyjump"] == "root@192.0.2.5:2200"
    hop = config.lookup("192.0.2.5")
    assert hop["stricthostkeychecking"] == "yes" and hop["userknownhostsfile"] == "/lab/known_hosts"
    assert hop["identityfile"] == ["/k"] and hop["port"] == "2200" and hop["user"] == "root"
