"""The lab's NVIDIA stand-ins: package shape, and nvidia-ctk's config merging (as the real 1.18 does)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sovinfra.lab import nvidia_repo

CTK = Path(nvidia_repo.STANDIN_DIR) / "nvidia-ctk"


def ctk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CTK), *args], capture_output=True, text=True, check=True)


def test_driver_packages_pin_each_other_exactly() -> None:
    packages = {p.name: p for p in nvidia_repo.driver_packages("570.124.06", b"\x7fELF")}
    assert packages["nvidia-open"].depends == (
        "nvidia-driver (= 570.124.06-2)",
        "nvidia-kernel-open-dkms (= 570.124.06-2)",
    )
    assert "nvidia-kernel-dkms" in packages["nvidia-kernel-open-dkms"].conflicts
    assert "nvidia-fabricmanager-570" in packages
    nvml = packages["libnvidia-ml1"]
    assert nvml.files["/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"] == (0o644, b"\x7fELF")
    assert nvml.files["/usr/share/sovinfra-standin/driver-version"][1] == b"570.124.06\n"
    toolkit = {p.name: p for p in nvidia_repo.container_toolkit_packages("1.18.0")}
    assert set(toolkit) == {"nvidia-container-toolkit", "nvidia-container-toolkit-base",
                            "libnvidia-container-tools", "libnvidia-container1"}  # fmt: skip
    assert "nvidia-container-toolkit-base (= 1.18.0-2)" in toolkit["nvidia-container-toolkit"].depends


def test_ctk_containerd_keeps_the_users_config_and_is_stable(tmp_path: Path) -> None:
    config, drop_in = tmp_path / "config.toml", tmp_path / "conf.d" / "99-nvidia.toml"
    config.write_text('version = 2\nimports = ["/etc/site/*.toml"]\n\n[grpc]\n  max_recv_message_size = 1\n')
    args = (
        "runtime",
        "configure",
        "--runtime=containerd",
        f"--config={config}",
        f"--drop-in-config={drop_in}",
    )
    ctk(*args)
    first = config.read_text()
    assert 'imports = ["/etc/site/*.toml", "/etc/containerd/conf.d/*.toml"]' in first
    assert "max_recv_message_size = 1" in first
    assert 'BinaryName = "/usr/bin/nvidia-container-runtime"' in drop_in.read_text()
    ctk(*args)
    assert config.read_text() == first  # configuring twice changes nothing


def test_ctk_docker_merges_daemon_json(tmp_path: Path) -> None:
    daemon = tmp_path / "daemon.json"
    daemon.write_text(json.dumps({"log-driver": "journald", "runtimes": {"crun": {"path": "/usr/bin/crun"}}}))
    ctk("runtime", "configure", "--runtime=docker", f"--config={daemon}", "--set-as-default")
    doc = json.loads(daemon.read_text())
    assert doc["log-driver"] == "journald" and doc["runtimes"]["crun"] == {"path": "/usr/bin/crun"}
    assert doc["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"
    assert doc["default-runtime"] == "nvidia"
