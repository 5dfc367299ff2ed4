"""The checks on readings real GPUs gave through real NVML (device runs, serials redacted).

Two recordings, each one SXM GPU passed through to a VM (`scripts/device-check.sh`): an H100 80GB HBM3 and
an H200, both on driver 580.159.04. NVML reported no NVLink state and fabric state not_supported on both.
Idle each is healthy apart from that; under a CUDA load the power cap is informational and the load's own
process is reported.
"""

from __future__ import annotations

import json

import pytest

from sovinfra.health import checks, models, report
from sovinfra.health.expect import Expectations
from sovinfra.health.readings import NodeReading
from tests.conftest import FIXTURES

REAL = FIXTURES / "real_nvml"
DEVICES = ("h100_sxm_vm", "h200_vm")
VM_SINGLE_GPU = Expectations(
    gpu_count=1,
    nvlinks=0,
    nvswitch=False,
    driver_version="580.159.04",
    cuda_version="13.0",
    serials=["REDACTED0001"],
    mig_enabled=False,
)
# Judgements changed on purpose since a recording: (device, check) -> (severity then, severity now).
# A GPU whose NVML gives no NVLink state at all (these VMs) is a warning naming the expectation to set,
# not a failure of 18 links; the fabric warning now says what NVML's not_supported means and what to set.
CHANGED = {
    ("h100_sxm_vm", "nvlink"): ("fail", "warn"),
    ("h100_sxm_vm", "fabric"): ("warn", "warn"),
    ("h200_vm", "fabric"): ("warn", "warn"),
}
# The device sampled its readings and ran its agent a moment apart: these messages carry live values.
SAMPLED = {"power", "temperature"}


def reading(device: str, state: str) -> NodeReading:
    return NodeReading.from_dict(json.loads((REAL / f"{device}_{state}_readings.json").read_text()))


def not_ok(findings: list) -> list[tuple[str, str]]:
    return sorted((f.check, f.severity) for f in findings if f.severity != "ok")


@pytest.mark.parametrize("device", DEVICES)
def test_idle_gpu_is_healthy_when_the_vm_shape_is_expected(device: str) -> None:
    findings = checks.check_node(reading(device, "idle"), VM_SINGLE_GPU)
    assert not_ok(findings) == []
    assert report.status_of(findings) == "healthy"
    assert {f.check for f in findings} >= {
        "gpu_count",
        "driver_version",
        "cuda_version",
        "ecc",
        "pcie",
        "clocks",
    }


@pytest.mark.parametrize(("device", "model"), [("h100_sxm_vm", "H100 SXM"), ("h200_vm", "H200")])
def test_idle_gpu_as_its_plain_sxm_model_flags_the_missing_fabric_and_links(device: str, model: str) -> None:
    node = reading(device, "idle")
    findings = checks.check_node(node)
    assert not_ok(findings) == [("fabric", "warn"), ("nvlink", "warn")]
    assert report.status_of(findings) == "degraded"
    fabric = next(f for f in findings if f.check == "fabric")
    assert "no NVSwitch fabric" in fabric.message and "nvswitch: false" in fabric.action
    assert models.model_for(node.gpus[0].name).name == model


@pytest.mark.parametrize("device", DEVICES)
def test_gpu_under_load(device: str) -> None:
    node = reading(device, "load")
    g = node.gpus[0]
    assert g.clocks_event_reasons == 4 and g.power_w and g.power_w > 600 and g.processes
    findings = checks.check_node(node, VM_SINGLE_GPU)
    assert not_ok(findings) == [("processes", "warn")]  # the CUDA load itself
    clocks = next(f for f in findings if f.check == "clocks")
    assert "power cap" in clocks.message


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("driver", ["570.124.06", "580.159.03"])
def test_driver_pin_mismatch_fails(device: str, driver: str) -> None:
    expectations = Expectations(driver_version=driver)
    assert ("driver_version", "fail") in not_ok(checks.check_node(reading(device, "idle"), expectations))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("state", ["idle", "load"])
def test_the_device_agents_document_is_what_todays_code_makes_of_its_readings(
    device: str, state: str
) -> None:
    """The agent's JSON as the device printed it, field by field, from the readings it printed beside it,
    apart from the judgements CHANGED on purpose since (their severities then and now are checked)."""
    recorded = json.loads((REAL / f"{device}_{state}_health.json").read_text())
    node = reading(device, state)
    ours = report.document(node, checks.check_node(node), recorded["host"])
    for (where, check), (then, now) in CHANGED.items():
        if where != device:
            continue
        severities = []
        for doc in (recorded, ours):
            found = [f for f in doc["findings"] if f["check"] == check]
            assert len(found) == 1
            doc["findings"].remove(found[0])
            severities.append(found[0]["severity"])
        assert tuple(severities) == (then, now)
    for doc in (recorded, ours):
        del doc["status"]  # follows from the findings
        for finding in doc["findings"]:
            if finding["check"] in SAMPLED:
                del finding["message"]
    assert ours == recorded


@pytest.mark.parametrize(
    ("name", "model", "nvswitch"),
    [
        ("NVIDIA H200", "H200", True),
        ("NVIDIA H200 NVL", "H200 NVL", False),
        ("NVIDIA H100 NVL", "H100 PCIe", False),
    ],
)
def test_nvl_cards_are_not_judged_as_sxm_modules(name: str, model: str, nvswitch: bool) -> None:
    """An NVL card links through bridges, without NVSwitch: its fabric and 18 links are not expected."""
    found = models.model_for(name)
    assert (found.name, found.nvswitch) == (model, nvswitch)
