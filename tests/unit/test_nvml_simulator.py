"""The NVML simulator under the unmodified pynvml, fault by fault, and the agent's exit codes.

Needs gcc, libyaml-dev and the nvidia-nvml-dev wheel (scripts/setup installs them).
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pynvml
import pytest

from sovinfra.health import checks, collect, report
from sovinfra.health.expect import Expectations
from sovinfra.lab import nvmlsim
from tests.conftest import ROOT

PROFILES = nvmlsim.PROFILES_DIR


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return nvmlsim.build(tmp_path_factory.mktemp("nvmlsim"))


@pytest.fixture(scope="module")
def loaded(library: Path) -> Path:
    """Preload by absolute path: pynvml's CDLL("libnvidia-ml.so.1") then finds the simulator."""
    ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
    return library


@pytest.fixture
def profile(monkeypatch: pytest.MonkeyPatch, loaded: Path) -> Iterator[object]:
    def use(name_or_path: str | Path) -> None:
        path = name_or_path if isinstance(name_or_path, Path) else PROFILES / f"{name_or_path}.yml"
        monkeypatch.setenv("SOVINFRA_NVML_PROFILE", str(path))

    yield use


def not_ok(findings: list) -> list[tuple[str, str, int | None]]:
    return sorted((f.check, f.severity, f.gpu_index) for f in findings if f.severity != "ok")


@pytest.mark.parametrize(
    "name", ["healthy-8x-h100-sxm", "healthy-8x-a100-sxm", "healthy-4x-l40s", "healthy-8x-v100-sxm2"]
)
def test_healthy_profiles_have_no_findings_above_ok(profile, name: str) -> None:  # type: ignore[no-untyped-def]
    profile(name)
    node = collect.collect(kernel_log=False)
    assert not_ok(checks.check_node(node)) == []
    assert node.gpus and all(g.serial and g.bus_id for g in node.gpus)


FAULTS = [
    ("fault-xid-79", [("xid", "fail", 3)]),
    ("fault-ecc-uncorrectable", [("ecc", "fail", 2)]),
    ("fault-ecc-corrected-high", [("ecc", "warn", 1)]),
    ("fault-row-remap-pending", [("row_remap", "fail", 5)]),
    ("fault-row-remap-failure", [("row_remap", "fail", 6), ("row_remap", "warn", 6)]),
    ("fault-retired-pages", [("retired_pages", "fail", 4), ("retired_pages", "fail", 4)]),
    ("fault-pcie-downtrain", [("pcie", "fail", 1)]),
    ("fault-nvlink-down", [("nvlink", "fail", 6)]),
    ("fault-nvlink-errors", [("nvlink", "warn", 7)]),
    ("fault-hw-slowdown", [("clocks", "fail", 0)]),
    ("fault-sw-thermal", [("clocks", "warn", 3)]),
    ("fault-temperature", [("temperature", "fail", 4)]),
    ("fault-power-over-limit", [("power", "warn", 2)]),
    ("fault-persistence-off", [("persistence", "warn", 0)]),
    ("fault-mig-pending", [("mig", "warn", 5)]),
    ("fault-fabric-not-started", [("fabric", "fail", 0)]),
    ("fault-leftover-process", [("processes", "warn", 7)]),
    ("fault-two-gpus", [("ecc", "fail", 1), ("nvlink", "fail", 6)]),
]


@pytest.mark.parametrize(("name", "expected"), FAULTS, ids=[f[0] for f in FAULTS])
def test_each_fault_is_found_on_the_right_gpu(profile, name: str, expected: list) -> None:  # type: ignore[no-untyped-def]
    profile(name)
    node = collect.collect(xid_window_s=0.05, kernel_log=False)
    findings = checks.check_node(node)
    assert not_ok(findings) == sorted(expected)
    for f in findings:
        if f.severity != "ok" and f.gpu_index is not None:
            gpu = node.gpus[f.gpu_index]
            assert (f.serial, f.bus_id) == (gpu.serial, gpu.bus_id)


def test_application_xid_is_not_a_node_fault(profile) -> None:  # type: ignore[no-untyped-def]
    profile("fault-xid-application")
    findings = checks.check_node(collect.collect(xid_window_s=0.05, kernel_log=False))
    assert not_ok(findings) == []
    assert any(f.check == "xid" and "application" in f.message and f.gpu_index == 2 for f in findings)


def test_lost_gpu_is_named_by_serial_not_index(profile) -> None:  # type: ignore[no-untyped-def]
    profile("healthy-8x-h100-sxm")
    serials = [g.serial for g in collect.collect(kernel_log=False).gpus]
    profile("fault-lost-gpu")
    node = collect.collect(kernel_log=False)
    assert len(node.gpus) == 7 and node.gpus[4].serial == serials[5]  # indices shifted
    findings = checks.check_node(node, Expectations(gpu_count=8, serials=serials))
    failed = [(f.check, f.serial) for f in findings if f.severity == "fail"]
    assert sorted(failed) == [("gpu_count", None), ("gpu_identity", serials[4])]


def test_mig_and_versions_against_expectations(profile) -> None:  # type: ignore[no-untyped-def]
    profile("healthy-8x-h100-sxm")
    node = collect.collect(kernel_log=False)
    findings = checks.check_node(
        node, Expectations(mig_enabled=True, driver_version="570.124.06", cuda_version="12.8")
    )
    assert {(f.check, f.severity) for f in findings if f.severity != "ok"} == {
        ("mig", "fail"),
        ("driver_version", "fail"),
        ("cuda_version", "fail"),
    }


def test_init_failure_and_bad_profile_raise_unavailable(profile, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    profile("fault-init-failure")
    with pytest.raises(collect.NvmlUnavailable, match="Driver Not Loaded"):
        collect.collect(kernel_log=False)
    bad = tmp_path / "bad.yml"
    bad.write_text("gpus:\n  - name: H100\n    nvlinks: {count: 18, donw: [1]}\n")
    profile(bad)
    with pytest.raises(collect.NvmlUnavailable, match=r"gpus\.0\.nvlinks\.donw: unknown key"):
        collect.collect(kernel_log=False)


def test_unsupported_features_answer_like_a_driver(profile, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    minimal = tmp_path / "minimal.yml"
    minimal.write_text("gpus:\n  - {name: Some GPU, ecc: null, mig: null, remapped_rows: null, pcie: null}\n")
    profile(minimal)
    pynvml.nvmlInit()
    try:
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        with pytest.raises(pynvml.NVMLError_NotSupported):
            pynvml.nvmlDeviceGetEccMode(h)
        with pytest.raises(pynvml.NVMLError_FunctionNotFound):
            pynvml.nvmlDeviceGetPowerManagementDefaultLimit(h)  # not simulated: an "older driver"
        with pytest.raises(pynvml.NVMLError_InvalidArgument):
            pynvml.nvmlDeviceGetHandleByIndex(1)
    finally:
        pynvml.nvmlShutdown()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        pynvml.nvmlDeviceGetCount()


def test_struct_layouts_match_pynvml(tmp_path: Path) -> None:
    exe = tmp_path / "layout"
    subprocess.run(
        ["gcc", f"-I{nvmlsim.nvml_include_dir()}", "-o", str(exe), str(nvmlsim.SOURCE_DIR / "layout.c")],
        check=True,
    )
    c_side = {}
    for line in subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.splitlines():
        struct, field, offset, size = line.split()
        c_side[(struct, field)] = (int(offset), int(size))
    py_structs = {
        "nvmlPciInfo_t": pynvml.nvmlPciInfo_t,
        "nvmlMemory_t": pynvml.c_nvmlMemory_t,
        "nvmlEventData_t": pynvml.c_nvmlEventData_t,
        "nvmlProcessInfo_t": pynvml.c_nvmlProcessInfo_v3_t,
        "nvmlGpuFabricInfo_t": pynvml.c_nvmlGpuFabricInfo_t,
    }
    # nvml.h types the fabric state as unsigned char; pynvml reads a c_uint over it and the 3 bytes of
    # padding after it. The sizes agree, and the simulator zero-fills the struct, as the driver does.
    wider_in_pynvml = {("nvmlGpuFabricInfo_t", "state")}
    for (struct, field), (offset, size) in c_side.items():
        cls = py_structs[struct]
        if field == "__size__":
            assert ctypes.sizeof(cls) == size, struct
            continue
        descriptor = getattr(cls, field)
        assert descriptor.offset == offset, f"{struct}.{field}"
        if (struct, field) in wider_in_pynvml:
            assert descriptor.size > size and offset + descriptor.size <= c_side[(struct, "__size__")][1]
        else:
            assert descriptor.size == size, f"{struct}.{field}"


def agent(library: Path | None, profile_path: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "SOVINFRA_NVML_PROFILE")}
    if library:
        env["LD_LIBRARY_PATH"] = str(library.parent)
    if profile_path:
        env["SOVINFRA_NVML_PROFILE"] = str(profile_path)
    return subprocess.run(
        [sys.executable, "-m", "sovinfra", "health", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_agent_exit_codes_and_outputs(library: Path, tmp_path: Path) -> None:
    prom = tmp_path / "gpu.prom"
    healthy = agent(library, PROFILES / "healthy-8x-h100-sxm.yml", "--json", "--prometheus", str(prom))
    assert healthy.returncode == 0, healthy.stderr
    doc = json.loads(healthy.stdout)
    assert doc["status"] == "healthy" and doc["gpu_count"] == 8
    assert all({"check", "severity", "serial", "bus_id"} <= set(f) for f in doc["findings"])
    text = prom.read_text()
    assert "# TYPE sovinfra_gpu_health_status gauge\nsovinfra_gpu_health_status 0" in text
    assert text.count("sovinfra_gpu_temperature_celsius{") == 8

    failing = agent(library, PROFILES / "fault-ecc-uncorrectable.yml", "--json")
    assert failing.returncode == 1
    assert json.loads(failing.stdout)["status"] == "unhealthy"

    # No driver, also on a machine that has one: an empty libnvidia-ml.so.1 first on the library path is
    # what the loader finds (and cannot load), so the real one in ld.so.cache is never reached.
    nothing = tmp_path / "no-driver"
    nothing.mkdir()
    (nothing / "libnvidia-ml.so.1").write_bytes(b"")
    no_driver = agent(nothing / "libnvidia-ml.so.1", None)
    assert no_driver.returncode == 2
    assert "no NVIDIA driver" in no_driver.stderr and "Traceback" not in no_driver.stderr

    bad = tmp_path / "bad.yml"
    bad.write_text("gpus:\n  - {name: X, power_w: lots}\n")
    broken = agent(library, bad)
    assert broken.returncode == 2
    assert "gpus.0.power_w" in broken.stderr and "Traceback" not in broken.stderr


def test_expectations_file_errors_name_the_key(library: Path, tmp_path: Path) -> None:
    expect = tmp_path / "health.yml"
    expect.write_text("gpu_count: eight\n")
    result = agent(library, PROFILES / "healthy-8x-h100-sxm.yml", "--expect", str(expect))
    assert result.returncode == 2 and "gpu_count" in result.stderr and str(expect) in result.stderr


def test_prometheus_labels_are_escaped() -> None:
    from sovinfra.health.findings import Finding
    from sovinfra.health.readings import NodeReading

    text = report.prometheus(NodeReading("1", "1", []), [Finding('we"ird', "warn", "m", serial="a\\b")])
    assert 'check="we\\"ird",serial="a\\\\b"' in text
