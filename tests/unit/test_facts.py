"""One reading of a host's state (script, parser, the roles' filter) and one reading of its ssh settings."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

import paramiko
import yaml

from sovinfra.fleet import host_state, ssh_options
from sovinfra.inventory import model
from tests.conftest import ROOT

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
free_bytes=412316860416
secure_boot=enabled
kernel_headers_candidate=6.8.0-45.45
nvidia_loaded_version=570.124.06
nvidia_module_version=570.124.06
nouveau_loaded=no
""".splitlines()


def test_parse_a_recorded_host() -> None:
    facts = host_state.parse(CAPTURED)
    assert facts["os_id"] == "ubuntu" and facts["os_version"] == "24.04"
    assert facts["cpus"] == 224 and facts["mem_kib"] == 2113403512
    assert facts["disks"][0] == {"name": "nvme0n1", "bytes": 3840755982336, "rotational": False}
    assert facts["disks"][1]["rotational"] is True
    assert facts["nvidia_pci"] == [
        {"bus_id": "0000:18:00.0", "device_id": "0x2330"},
        {"bus_id": "0000:2a:00.0", "device_id": "0x2330"},
    ]
    assert facts["secure_boot"] == "enabled" and facts["free_bytes"] == 412316860416
    assert facts["nvidia_loaded_version"] == facts["nvidia_module_version"] == "570.124.06"
    assert facts["kernel_headers_candidate"] == "6.8.0-45.45" and facts["nouveau_loaded"] == "no"


def test_the_script_reads_this_machine_in_the_one_vocabulary() -> None:
    """The script itself, run here (no GPU): every key the readers use, the words they judge by."""
    out = subprocess.run(["sh", str(host_state.SCRIPT)], capture_output=True, text=True, check=True).stdout
    facts = host_state.parse(out.splitlines())
    assert {"kernel", "free_bytes", "secure_boot", "nouveau_loaded", "nvidia_loaded_version"} <= set(facts)
    assert facts["secure_boot"] in ("enabled", "disabled", "unavailable")
    assert facts["nouveau_loaded"] in ("yes", "no") and isinstance(facts["free_bytes"], int)
    assert facts["kernel"] == os.uname().release and isinstance(facts["nvidia_pci"], list)


def test_the_roles_filter_is_the_same_parser() -> None:
    """preflight and the driver role parse with the `sovinfra_host_state` filter: the same function."""
    spec = importlib.util.spec_from_file_location(
        "sovinfra_host_state", ROOT / "sovinfra" / "ansible" / "plugins" / "filter" / "sovinfra_host_state.py"
    )
    assert spec and spec.loader
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    parse = plugin.FilterModule().filters()["sovinfra_host_state"]
    assert parse(CAPTURED) == host_state.parse(CAPTURED)


def test_parse_tolerates_noise_and_missing_numbers() -> None:
    facts = host_state.parse(["garbage", "cpus=", "mem_kib=abc"])
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
