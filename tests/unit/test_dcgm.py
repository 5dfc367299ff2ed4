"""DCGM diagnostics: the parser on documents in DCGM's own shapes (4.x and 3.x), the records made of them,
and the lab's stand-in dcgmi judging the NVML simulator's GPUs (the right test fails on the right GPU)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sovinfra.acceptance import dcgm
from sovinfra.lab import nvidia_repo, nvmlsim

# DCGM 4.x (`dcgmi diag -r 2 -j`): "DCGM Diagnostic", per-entity results, a test_summary per test, the
# entity groups and metadata beside it (the shape NVIDIA's own DCGM tests assert and public captures show).
V4 = {
    "DCGM Diagnostic": {
        "test_categories": [
            {
                "category": "Deployment",
                "tests": [
                    {
                        "name": "software",
                        "test_summary": {"status": "Pass"},
                        "results": [
                            {"entity_group": "GPU", "entity_group_id": 1, "entity_id": 0, "status": "Pass"},
                            {"entity_group": "GPU", "entity_group_id": 1, "entity_id": 1, "status": "Pass"},
                        ],
                    }
                ],
            },
            {
                "category": "Hardware",
                "tests": [
                    {
                        "name": "memory",
                        "test_summary": {"status": "Fail"},
                        "results": [
                            {"entity_group": "GPU", "entity_group_id": 1, "entity_id": 0, "status": "Pass"},
                            {
                                "entity_group": "GPU",
                                "entity_group_id": 1,
                                "entity_id": 1,
                                "status": "Fail",
                                "warnings": [
                                    {
                                        "error_category": 2,
                                        "error_id": 17,
                                        "error_severity": 3,
                                        "warning": "GPU 1 had uncorrectable memory errors",
                                    }
                                ],
                            },
                        ],
                    }
                ],
            },
            {
                "category": "Integration",
                "tests": [
                    {
                        "name": "pcie",
                        "test_summary": {"status": "Skip"},
                        "results": [
                            {"entity_group": "CPU", "entity_group_id": 7, "entity_id": 0, "status": "Skip"},
                            {"entity_group": "GPU", "entity_group_id": 1, "entity_id": 1, "status": "Skip"},
                        ],
                    }
                ],
            },
        ]
    },
    "entity_groups": [
        {"entity_group": "GPU", "entity_group_id": 1, "entities": [{"entity_id": 0}, {"entity_id": 1}]}
    ],
    "metadata": {"version": "4.2.3", "Driver Version Detected": "570.133.20"},
}
# DCGM 3.x: "DCGM GPU Diagnostic", results by gpu_id as a string; deployment tests about the node.
V3 = {
    "DCGM GPU Diagnostic": {
        "test_categories": [
            {"category": "Deployment", "tests": [{"name": "Denylist", "results": [{"status": "Pass"}]}]},
            {
                "category": "Integration",
                "tests": [
                    {
                        "name": "PCIe",
                        "results": [
                            {"gpu_id": "0", "status": "Skip"},
                            {
                                "gpu_id": "1",
                                "status": "Warn",
                                "warnings": [
                                    {"warning": "PCIe replay count 120 exceeds 100", "error_id": 39}
                                ],
                            },
                        ],
                    }
                ],
            },
        ],
        "version": "3.3.5",
    }
}
GPUS = {
    0: {"uuid": "GPU-a", "serial": "1650924060001", "bus_id": "00000000:19:00.0"},
    1: {"uuid": "GPU-b", "serial": "1650924060002", "bus_id": "00000000:3B:00.0"},
}


def test_dcgm_4_document() -> None:
    version, results = dcgm.parse(json.dumps(V4))
    assert version == "4.2.3"
    assert [(r.test, r.gpu, r.status) for r in results] == [
        ("software", 0, "Pass"),
        ("software", 1, "Pass"),
        ("memory", 0, "Pass"),
        ("memory", 1, "Fail"),
        ("pcie", 1, "Skip"),
    ]
    records = dcgm.records("r", "gpu1", json.dumps(V4), GPUS)
    bad = [r for r in records if r.status == "fail"]
    assert [(r.check, r.gpu_serial, r.gpu_uuid, r.message) for r in bad] == [
        ("dcgm memory", "1650924060002", "GPU-b", "GPU 1 had uncorrectable memory errors")
    ]
    assert bad[0].action and {r.stage for r in records} == {"gpu diagnostics"}
    assert [r.status for r in records if r.check == "dcgm pcie"] == ["skipped"]


def test_dcgm_3_document() -> None:
    version, results = dcgm.parse(json.dumps(V3))
    assert version == "3.3.5"
    assert [(r.test, r.gpu, r.status, r.warnings) for r in results] == [
        ("Denylist", None, "Pass", ()),
        ("PCIe", 0, "Skip", ()),
        ("PCIe", 1, "Warn", ("PCIe replay count 120 exceeds 100",)),
    ]
    records = dcgm.records("r", "gpu1", json.dumps(V3), GPUS)
    assert [(r.check, r.gpu_serial, r.status) for r in records] == [
        ("dcgm Denylist", "", "pass"),
        ("dcgm PCIe", "1650924060001", "skipped"),
        ("dcgm PCIe", "1650924060002", "warn"),
    ]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("Error: unable to establish a connection to the specified host: localhost", "not JSON"),
        ("[]", "not a JSON object"),
        ('{"other": {}}', 'no "DCGM Diagnostic"'),
        ('{"DCGM Diagnostic": {"runtime_error": "NVVS failed to start"}}', "dcgmi: NVVS failed to start"),
        ('{"DCGM Diagnostic": {"test_categories": []}}', "test_categories: missing or empty"),
        (
            '{"DCGM Diagnostic": {"test_categories": [{"tests": [{"name": "x", "results": [{}]}]}]}}',
            "x: a result",
        ),
        (
            '{"DCGM Diagnostic": {"test_categories": [{"tests": [{"name": "x", "results": '
            '[{"status": "Pass", "gpu_id": "one"}]}]}]}}',
            "x: a GPU id that is not a number",
        ),
    ],
)
def test_what_is_not_a_diagnostic_is_an_error_never_a_pass(text: str, match: str) -> None:
    with pytest.raises(dcgm.DiagError, match=match):
        dcgm.parse(text)
    [record] = dcgm.records("r", "gpu1", text, GPUS)
    assert record.status == "error" and match.strip('"') in record.message.replace('\\"', '"')


def test_no_dcgmi_is_not_run() -> None:
    [record] = dcgm.records("r", "gpu1", dcgm.NOT_INSTALLED + "\n", GPUS)
    assert (record.status, record.check) == ("not-run", "dcgm") and "dcgm role" in record.action


# ---- the lab's stand-in dcgmi, against the NVML simulator ----

DCGMI = nvidia_repo.STANDIN_DIR / "dcgmi"


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return nvmlsim.build(tmp_path_factory.mktemp("nvmlsim"))


@pytest.fixture(scope="module")
def host_engine() -> Iterator[str]:
    """Something listening as nv-hostengine does, on a port of its own: dcgmi's --host HOST:PORT."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                server.accept()[0].close()
            except OSError:  # closed at the end of the module
                return

    threading.Thread(target=serve, daemon=True).start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    server.shutdown(socket.SHUT_RDWR)
    server.close()


def dcgmi(library: Path, profile: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LD_LIBRARY_PATH": str(library.parent),
        "PYTHONPATH": str(nvidia_repo.STANDIN_DIR),
        "SOVINFRA_NVML_PROFILE": str(nvmlsim.PROFILES_DIR / f"{profile}.yml"),
    }
    return subprocess.run([sys.executable, str(DCGMI), *args], env=env, capture_output=True, text=True)


@pytest.mark.parametrize(
    ("profile", "level", "failing"),
    [
        ("healthy-8x-h100-sxm", 3, []),
        ("fault-row-remap-pending", 1, [("software", 5)]),
        ("fault-persistence-off", 1, [("software", 0)]),
        ("fault-ecc-uncorrectable", 1, []),  # memory errors are level 2's memory test
        ("fault-ecc-uncorrectable", 2, [("memory", 2)]),
        ("fault-pcie-downtrain", 2, [("pcie", 1)]),
    ],
)
def test_the_standin_fails_the_right_test_on_the_right_gpu(
    library: Path, host_engine: str, profile: str, level: int, failing: list[tuple[str, int]]
) -> None:
    done = dcgmi(library, profile, "diag", "-r", str(level), "-j", "--host", host_engine)
    assert done.returncode == (226 if failing else 0), done.stdout + done.stderr
    _, results = dcgm.parse(done.stdout)
    assert [(r.test, r.gpu) for r in results if r.status == "Fail"] == failing
    assert {r.test for r in results} >= {"software"} and all(r.gpu is not None for r in results)


def test_the_standin_needs_its_host_engine(library: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as closed:  # a port nothing listens on once closed
        port = closed.getsockname()[1]
    done = dcgmi(library, "healthy-4x-l40s", "diag", "-r", "1", "-j", "--host", f"127.0.0.1:{port}")
    assert done.returncode == 255 and "Unable to connect to host engine" in done.stdout
    [record] = dcgm.records("r", "gpu1", done.stdout, GPUS)
    assert (
        record.status == "error" and "not JSON" in record.message and "unable to establish" in record.message
    )


def test_dcgm_packages_pin_each_other_with_the_epoch() -> None:
    packages = {p.name: p for p in nvidia_repo.dcgm_packages("4.2.3")}
    assert set(packages) == {
        "datacenter-gpu-manager-4-core",
        "datacenter-gpu-manager-4-cuda12",
        "datacenter-gpu-manager-4-cuda13",
    }
    assert packages["datacenter-gpu-manager-4-cuda12"].depends == (
        "datacenter-gpu-manager-4-core (= 1:4.2.3-1)",
    )
    core = packages["datacenter-gpu-manager-4-core"]
    assert {"/usr/bin/dcgmi", "/usr/bin/nv-hostengine", "/lib/systemd/system/nvidia-dcgm.service"} <= set(
        core.files
    )
