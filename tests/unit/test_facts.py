"""Parsing node facts and mapping Ansible connection variables for pyinfra."""

from __future__ import annotations

from sovinfra.fleet.connection import ssh_data
from sovinfra.fleet.facts import parse_node_facts

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


def test_ssh_data_keeps_host_key_checking_and_pinned_known_hosts() -> None:
    data = ssh_data(
        {
            "ansible_host": "10.1.1.1",
            "ansible_port": 2222,
            "ansible_user": "ops",
            "ansible_ssh_private_key_file": "/k",
            "ansible_ssh_common_args": "-o UserKnownHostsFile=/lab/known_hosts -o StrictHostKeyChecking=no",
        },
        "n1",
    )
    assert data["ssh_hostname"] == "10.1.1.1" and data["ssh_port"] == 2222 and data["ssh_user"] == "ops"
    assert data["ssh_known_hosts_file"] == "/lab/known_hosts"
    assert data["ssh_strict_host_key_checking"] == "yes"  # whatever the inventory's ssh args say
    assert ssh_data({}, "n2")["ssh_hostname"] == "n2"
