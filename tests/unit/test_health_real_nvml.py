"""The checks on readings a real H100 gave through real NVML (device run, serials redacted).

The GPU was one H100 SXM passed through to a VM: NVML reported no NVLink state and fabric state
not_supported. Idle it is healthy apart from that; under a CUDA load the power cap is informational
and the load's own process is reported.
"""

from __future__ import annotations

import json

import pytest

from sovinfra.health import checks, report
from sovinfra.health.expect import Expectations
from sovinfra.health.readings import NodeReading
from tests.conftest import FIXTURES

REAL = FIXTURES / "real_nvml"
VM_SINGLE_GPU = Expectations(
    gpu_count=1,
    nvlinks=0,
    nvswitch=False,
    driver_version="580.159.04",
    cuda_version="13.0",
    serials=["REDACTED0001"],
    mig_enabled=False,
)


def reading(name: str) -> NodeReading:
    return NodeReading.from_dict(json.loads((REAL / f"h100_sxm_vm_{name}_readings.json").read_text()))


def not_ok(findings: list) -> list[tuple[str, str]]:
    return sorted((f.check, f.severity) for f in findings if f.severity != "ok")


def test_idle_h100_is_healthy_when_the_vm_shape_is_expected() -> None:
    findings = checks.check_node(reading("idle"), VM_SINGLE_GPU)
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


def test_idle_h100_as_a_plain_sxm_model_flags_the_missing_fabric() -> None:
    findings = checks.check_node(reading("idle"))
    assert not_ok(findings) == [("fabric", "warn"), ("nvlink", "warn")]
    assert report.status_of(findings) == "degraded"


def test_h100_under_load() -> None:
    node = reading("load")
    g = node.gpus[0]
    assert g.clocks_event_reasons == 4 and g.power_w and g.power_w > 600 and g.processes
    findings = checks.check_node(node, VM_SINGLE_GPU)
    assert not_ok(findings) == [("processes", "warn")]  # the CUDA load itself
    clocks = next(f for f in findings if f.check == "clocks")
    assert "power cap" in clocks.message


@pytest.mark.parametrize("driver", ["570.124.06", "580.159.03"])
def test_driver_pin_mismatch_fails(driver: str) -> None:
    expectations = Expectations(driver_version=driver)
    assert ("driver_version", "fail") in not_ok(checks.check_node(reading("idle"), expectations))


# The device sampled its readings and ran its agent a moment apart: these messages carry live values.
SAMPLED = {"power", "temperature"}


@pytest.mark.parametrize("state", ["idle", "load"])
def test_the_device_agents_document_is_what_todays_code_makes_of_its_readings(state: str) -> None:
    """The agent's JSON as the device printed it, field by field, from the readings it printed beside it.

    One judgement changed since the recording, on purpose: a GPU whose NVML gives no NVLink state at all
    (this VM) is a warning naming the expectation to set, not a failure of 18 links.
    """
    device = json.loads((REAL / f"h100_sxm_vm_{state}_health.json").read_text())
    node = reading(state)
    ours = report.document(node, checks.check_node(node), device["host"])
    for doc in (device, ours):
        nvlink = [f for f in doc["findings"] if f["check"] == "nvlink"]
        assert len(nvlink) == 1
        doc["findings"].remove(nvlink[0])
        doc["nvlink_severity"] = nvlink[0]["severity"]
        del doc["status"]  # follows from the findings
        for finding in doc["findings"]:
            if finding["check"] in SAMPLED:
                del finding["message"]
    assert (device.pop("nvlink_severity"), ours.pop("nvlink_severity")) == ("fail", "warn")
    assert ours == device
