"""Fleet acceptance on the lab: a healthy run passes and becomes the baseline; then a GPU fault on one node
and a slower endpoint on the other fail the next run with exactly those GPUs and endpoints named, and the
report says what changed since the baseline."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from sovinfra.acceptance import rundir
from sovinfra.cli import cli
from sovinfra.lab import manager, nvmlsim
from tests.integration.conftest import set_gpu

pytestmark = pytest.mark.lab

UNIT = "sovinfra-inference-tiny.service"
THROTTLE = "sovinfra-test-throttle"
HEALTHY = "healthy-4x-l40s"  # the lab's driver (570.124.06): nothing fails on the driver pin
ECC_GPU = "1791124002"  # GPU 2 of that profile, given uncorrectable ECC errors below


def ecc_fault(tmp_path: Path) -> Path:
    """The same four GPUs, GPU 2 with 4 uncorrectable ECC errors since boot and the row remap they caused
    pending (what DCGM's level-1 software test fails on)."""
    doc = yaml.safe_load(nvmlsim.profile_path(HEALTHY).read_text())
    doc["gpus"][2]["ecc"] = {"enabled": True, "volatile_uncorrected": 4, "aggregate_uncorrected": 4}
    doc["gpus"][2]["remapped_rows"] = {"uncorrectable": 1, "pending": True}
    path = tmp_path / "ecc-fault.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def acceptance(*args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(cli, ["acceptance", *args, "--json"])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def failing(run_dir: str) -> set[tuple[str, str, str]]:
    _, records = rundir.load(Path(run_dir))
    return {(r.stage, r.subject, r.check) for r in records if r.status in ("fail", "error", "not-run")}


def on(host: str, command: str) -> str:
    return subprocess.run(
        [*manager.ssh_argv(host), command], capture_output=True, text=True, check=True
    ).stdout


def test_accepted_baseline_then_a_gpu_fault_and_a_slow_endpoint_are_named(
    lab_inventory: str, converged: dict, gpus_restored: None, tmp_path: Path
) -> None:
    set_gpu("gpu1", HEALTHY)
    set_gpu("gpu2", HEALTHY)
    runs, base = tmp_path / "runs", tmp_path / "baseline"
    # Judged by the lab inventory's own acceptance_tolerances: the lab's two cores are shared by both nodes
    # and the client, so only a gross change counts.
    common = ["-i", lab_inventory, "--out", str(runs)]

    # As the README runs it: the first passing run becomes the baseline.
    code, first = acceptance(*common, "--baseline", str(base), "--accept")
    assert code == 0 and first["verdict"] in ("pass", "warn"), failing(first["path"])
    assert set(first["stage_seconds"]) == {
        "facts",
        "health start",
        "gpu diagnostics",
        "gpu bandwidth",
        "endpoints",
        "health end",
    }
    # NVIDIA's own diagnostics ran on every GPU of both nodes (DCGM, the lab's stand-in, level 1).
    _, records = rundir.load(Path(first["path"]))
    diag = {(r.host, r.gpu_serial, r.check, r.status) for r in records if r.stage == "gpu diagnostics"}
    assert len(diag) == 8 and {d[2:] for d in diag} == {("dcgm software", "pass")}, diag
    assert first["fingerprint"]["gpu1"]["driver"] == "570.124.06"
    gpus = {(r.host, r.gpu_serial) for r in records if r.stage == "health start" and r.check == "gpu present"}
    assert len([g for g in gpus if g[0] == "gpu1"]) == 4 and len([g for g in gpus if g[0] == "gpu2"]) == 4
    # The quick sweep of concurrency 4 on each node, and on the site endpoint (by default).
    points = {(r.host, r.endpoint) for r in records if r.stage == "endpoints" and r.check == "ttft p50"}
    assert points == {
        (host, f"{service}@c{c}")
        for host, service in (("gpu1", "tiny"), ("gpu2", "tiny"), ("mirror1", "site:tiny"))
        for c in (1, 2, 4)
    }
    assert first["accepted_into"] == str(base) and (base / "current").read_text().strip() == first["run"]

    set_gpu("gpu1", str(ecc_fault(tmp_path)))
    # A slower endpoint: gpu2's engine is held stopped 90% of the time (SIGSTOP/SIGCONT, a transient unit).
    pid = on("gpu2", f"systemctl show -P MainPID {UNIT}").strip()
    assert int(pid) > 0
    throttle = f"while :; do kill -STOP {pid}; sleep 0.09; kill -CONT {pid}; sleep 0.01; done"
    on("gpu2", f"systemd-run --unit {THROTTLE} sh -c '{throttle}'")
    try:
        code, second = acceptance(*common, "--baseline", str(base))
    finally:
        on("gpu2", f"systemctl stop {THROTTLE}; kill -CONT {pid}")
    assert code == 1 and second["verdict"] == "fail" and second["baseline"] == first["run"]
    bad = failing(second["path"])
    # The GPU by serial: the agent's ECC (and row remap) at the start and the end, DCGM's software test in
    # between; nothing on gpu2's GPUs or gpu1's endpoint.
    gpu_faults = {b for b in bad if "GPU" in b[1]}
    assert {b[1] for b in gpu_faults} == {f"gpu1 GPU {ECC_GPU}"}, bad
    assert {
        ("health start", f"gpu1 GPU {ECC_GPU}", "ecc"),
        ("gpu diagnostics", f"gpu1 GPU {ECC_GPU}", "dcgm software"),
        ("health end", f"gpu1 GPU {ECC_GPU}", "ecc"),
    } <= gpu_faults, gpu_faults
    assert not [b for b in bad if b[1].startswith("gpu1/")], bad
    slow = {b for b in bad if b[1].startswith("gpu2/")}
    assert slow and all(b[0] in ("endpoints", "baseline") for b in slow), slow
    assert ("baseline", "gpu2/tiny@c1", "ttft p50") in slow, slow
    # The site endpoint balances over both nodes: whether the slow one shows there is the balancer's call.
    assert bad - {b for b in bad if b[1].startswith("mirror1/site:tiny@")} == gpu_faults | slow
    page = (Path(second["path"]) / "report.html").read_text()
    assert f"gpu1 GPU {ECC_GPU}" in page and "gpu2/tiny@c1" in page and "% worse" in page
    shown = CliRunner().invoke(cli, ["acceptance", "show", second["path"]])
    assert shown.exit_code == 1 and ECC_GPU in shown.output and "gpu2/tiny@c1" in shown.output


def test_bandwidth_below_the_floor_names_the_gpu_and_the_node(
    lab_inventory: str, converged: dict, gpus_restored: None, tmp_path: Path
) -> None:
    """nvbandwidth and nccl-tests (the lab's packages of them, measuring the links NVML reports) judged
    against the H100 floors: a PCIe link trained at x8 fails that GPU's host<->device copies, two NVLinks
    down on one GPU fail its node's all_reduce, and every other GPU and node passes."""
    set_gpu("gpu1", "fault-nvlink-down")  # GPU 6 has NVLinks 3 and 11 down
    set_gpu("gpu2", "fault-pcie-downtrain")
    downtrained = next(
        g["serial"]
        for g in yaml.safe_load(nvmlsim.profile_path("fault-pcie-downtrain").read_text())["gpus"]
        if (g.get("pcie") or {}).get("width", 16) < 16
    )
    code, doc = acceptance(
        "-i", lab_inventory, "--out", str(tmp_path), "--baseline", "none", "--no-site-endpoint"
    )
    assert code == 1 and doc["stage_seconds"]["gpu bandwidth"] > 0
    _, records = rundir.load(Path(doc["path"]))
    measured = [r for r in records if r.stage == "gpu bandwidth"]
    bad = {(r.host, r.gpu_serial, r.check) for r in measured if r.status != "pass"}
    assert bad == {
        ("gpu1", "", "nccl all_reduce busbw"),
        ("gpu2", downtrained, "h2d bandwidth"),
        ("gpu2", downtrained, "d2h bandwidth"),
    }, bad
    # Every GPU of both nodes was measured three ways, each against floors.yml's H100 floor.
    per_gpu = [r for r in measured if r.gpu_serial]
    assert len(per_gpu) == 2 * 8 * 3 and {r.threshold_source for r in per_gpu} == {
        "floors.yml NVIDIA H100 80GB HBM3"
    }
    [ring] = [r for r in measured if r.host == "gpu1" and r.check == "nccl all_reduce busbw"]
    assert ring.message.endswith("over 8 GPUs < floor 460 GB/s"), ring.message
    # What the tools printed is kept in the run, with its sha256.
    files = json.loads((Path(doc["path"]) / "summary.json").read_text())["files"]
    assert {"raw/nvbandwidth-gpu2.json", "raw/all_reduce_perf-gpu1.txt"} <= set(files)
