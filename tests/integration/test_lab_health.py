"""GPU health end to end on the lab: the agent on simulated GPUs, the fleet table, unreachable nodes."""

from __future__ import annotations

import json

import pytest
import testinfra
from click.testing import CliRunner

from sovinfra.cli import cli
from sovinfra.lab import hosts, manager, state
from sovinfra.lab.state import LabState
from tests.integration.conftest import set_gpu

pytestmark = pytest.mark.lab


def verify(inventory: str) -> tuple[int, dict]:
    result = CliRunner().invoke(cli, ["verify", "health", "-i", inventory, "--json"])
    return result.exit_code, json.loads(result.stdout)


def test_agent_installed_with_its_timer(lab_inventory: str, converged: dict) -> None:
    node = testinfra.get_host("ansible://gpu1", ansible_inventory=f"{lab_inventory}/hosts.yml")
    assert node.service("sovinfra-health.timer").is_enabled
    assert node.service("sovinfra-health.timer").is_running
    # A minimal footprint: the agent's venv runs and has NVML's binding, and nothing of Ansible.
    assert node.run("/opt/sovinfra/venv/bin/python -c 'import pynvml, sovinfra.health'").rc == 0
    absent = node.run("/opt/sovinfra/venv/bin/python -c 'import ansible'")
    assert absent.rc == 1 and "ModuleNotFoundError: No module named 'ansible'" in absent.stderr
    node.check_output("systemctl start sovinfra-health.service")
    prom = node.file("/var/lib/node_exporter/textfile_collector/sovinfra_gpu_health.prom")
    assert prom.exists and "sovinfra_gpu_count " in prom.content_string


def test_fleet_table_and_exit_code(lab_inventory: str, converged: dict, gpus_restored: None) -> None:
    set_gpu("gpu1", "healthy-8x-a100-sxm")
    set_gpu("gpu2", "fault-row-remap-pending")
    code, doc = verify(lab_inventory)
    assert code == 1
    assert doc["failed_hosts"] == ["gpu2"]
    assert doc["hosts"]["gpu1"]["status"] == "healthy" and doc["hosts"]["gpu1"]["gpu_count"] == 8
    bad = [f for f in doc["hosts"]["gpu2"]["findings"] if f["severity"] == "fail"]
    assert [(f["check"], f["gpu_index"], f["serial"]) for f in bad] == [("row_remap", 5, "1654923005")]
    table = CliRunner().invoke(cli, ["verify", "health", "-i", lab_inventory]).output
    assert "gpu2" in table and "row remap is pending" in table

    set_gpu("gpu2", "healthy-4x-l40s")
    code, doc = verify(lab_inventory)
    assert code == 0 and not doc["failed_hosts"]


def test_bad_profile_is_refused_naming_the_key(tmp_path, lab: LabState) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.yml"
    bad.write_text("gpus:\n  - {name: H100, temperature_c: hot}\n")
    result = CliRunner().invoke(cli, ["lab", "gpu", "gpu1", str(bad)])
    assert result.exit_code == 2
    assert "gpus.0.temperature_c" in result.output


def test_stopped_node_is_unreachable_not_healthy(lab_inventory: str, converged: dict) -> None:
    gpu2 = state.load().hosts["gpu2"]
    hosts.stop("gpu2", gpu2.pid)
    try:
        code, doc = verify(lab_inventory)
        assert code == 1
        assert doc["hosts"]["gpu2"]["status"] == "unreachable"
        assert doc["hosts"]["gpu1"]["status"] == "healthy"
    finally:
        manager.up(2, log=lambda _m: None)  # boots gpu2 again from its kept layer
    code, doc = verify(lab_inventory)
    assert code == 0 and doc["hosts"]["gpu2"]["status"] == "healthy", doc["hosts"]["gpu2"]
