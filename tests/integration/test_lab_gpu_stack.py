"""The NVIDIA stack roles on the lab, through the stand-in NVIDIA repositories the mirror host publishes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import testinfra
from click.testing import CliRunner

from sovinfra.cli import cli
from sovinfra.lab import nvidia_repo

pytestmark = pytest.mark.lab
OLD, NEW = nvidia_repo.DRIVER_VERSIONS
DRIVER_PACKAGES = ("nvidia-open", "nvidia-driver", "nvidia-kernel-open-dkms", "libnvidia-ml1", "nvidia-smi",
                   "nvidia-persistenced", f"nvidia-fabricmanager-{nvidia_repo.DRIVER_BRANCH}")  # fmt: skip
TOOLKIT = ("nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container-tools",
           "libnvidia-container1")  # fmt: skip


def gpu_nodes(inventory: str, *args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(cli, ["apply", "gpu_nodes", "-i", inventory, "--json", *args])
    return result.exit_code, json.loads(result.stdout)


def host(inventory: str, name: str) -> testinfra.host.Host:
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=f"{inventory}/hosts.yml")


def versions(node: testinfra.host.Host, packages: tuple[str, ...]) -> dict[str, str]:
    out = node.check_output(
        "dpkg-query -W -f '${Package} ${Version}\\n' " + " ".join(["%s"] * len(packages)), *packages
    )
    return dict(line.split() for line in out.splitlines())


def held(node: testinfra.host.Host) -> set[str]:
    return set(node.check_output("apt-mark showhold").split())


def test_stack_converged_pinned_held_and_running(lab_inventory: str, converged: dict) -> None:
    code, again = gpu_nodes(lab_inventory)
    assert code == 0 and {h: r["changed"] for h, r in again["hosts"].items()} == {"gpu1": 0, "gpu2": 0}
    for name in ("gpu1", "gpu2"):
        node = host(lab_inventory, name)
        assert set(versions(node, DRIVER_PACKAGES).values()) == {nvidia_repo.driver_package_version(OLD)}
        assert set(versions(node, TOOLKIT).values()) == {
            f"{nvidia_repo.CONTAINER_TOOLKIT_VERSION}-{nvidia_repo.CONTAINER_TOOLKIT_REVISION}"
        }
        assert versions(node, ("cuda-toolkit-12-8",)) == {"cuda-toolkit-12-8": "12.8.1-1"}
        assert held(node) >= {*DRIVER_PACKAGES, *TOOLKIT, "cuda-toolkit-12-8"}
        # apt preferences pin each exact version (apt upgrade cannot move them even if unheld).
        pins = node.check_output("cat /etc/apt/preferences.d/sovinfra-*")
        assert "Package: cuda-toolkit-12-8\nPin: version 12.8.1-*" in pins
        assert f"Pin: version {OLD}-*" in pins and "Pin: version 1.18.0-*" in pins
        for service in ("nvidia-persistenced", "nvidia-fabricmanager", "containerd"):
            assert node.service(service).is_running and node.service(service).is_enabled, service
        # The driver's NVML answers with the installed driver; nvcc from the default toolkit is on PATH.
        smi = node.check_output("nvidia-smi --query-gpu=driver_version --format=csv,noheader")
        assert set(smi.split()) == {OLD}
        assert "release 12.8" in node.check_output("bash -lc 'nvcc --version'")
        assert node.file("/etc/containerd/conf.d/99-nvidia.toml").contains("nvidia-container-runtime")
        assert node.file("/etc/containerd/config.toml").contains("/etc/containerd/conf.d/\\*.toml")
        assert node.file("/etc/cdi/nvidia.yaml").contains("kind: nvidia.com/gpu")
        assert node.run("/usr/local/bin/sovinfra-health").rc == 0


def test_check_mode_on_a_converged_node_changes_nothing(lab_inventory: str, converged: dict) -> None:
    code, checked = gpu_nodes(lab_inventory, "--check")
    assert code == 0 and not checked["changes"], checked["changes"]


def test_user_runtime_settings_are_merged_not_overwritten(lab_inventory: str, converged: dict) -> None:
    node = host(lab_inventory, "gpu2")
    own = "version = 2\\n\\n[grpc]\\n  max_recv_message_size = 33554432\\n"
    node.check_output(f"printf '{own}' > /etc/containerd/config.toml && systemctl restart containerd")
    code, first = gpu_nodes(lab_inventory, "--limit", "gpu2", "--tags", "nvidia_container_toolkit")
    assert code == 0 and first["hosts"]["gpu2"]["changed"] >= 1
    config = node.file("/etc/containerd/config.toml").content_string
    assert "max_recv_message_size = 33554432" in config and "conf.d/*.toml" in config
    assert node.service("containerd").is_running
    code, again = gpu_nodes(lab_inventory, "--limit", "gpu2", "--tags", "nvidia_container_toolkit")
    assert code == 0 and again["hosts"]["gpu2"]["changed"] == 0


def sync(inventory: str) -> None:
    synced = CliRunner().invoke(cli, ["mirror", "packages", "sync", "-i", inventory])
    assert synced.exit_code == 0, synced.output


def test_driver_upgrade_and_back(lab_inventory: str, converged: dict, tmp_path: Path) -> None:
    """A rolling upgrade as a sovereign site does it: the new version pinned in the inventory, a new
    snapshot holding both (gpu2 stays on the old one) made the hosts' source, the node converged to it,
    and back. Done on a copy of the lab's inventory; gpu1 is put back on the lab's driver whatever fails."""
    node = host(lab_inventory, "gpu1")
    inventory = tmp_path / "lab"
    shutil.copytree(lab_inventory, inventory)
    pinned = inventory / "host_vars" / "gpu1.yml"
    pinned.parent.mkdir(exist_ok=True)
    # Not in the site snapshot yet: the converge refuses it before any change.
    pinned.write_text(f"nvidia_driver_version: '{NEW}'\n")
    tags = ("--limit", "gpu1", "--tags", "nvidia_driver,fabric_manager")
    try:
        code, run = gpu_nodes(str(inventory), *tags)
        assert code == 1 and run["hosts"]["gpu1"]["changed"] == 0
        assert any(f"{NEW} is not in the configured package sources" in f["msg"] for f in run["failures"])
        assert set(versions(node, DRIVER_PACKAGES).values()) == {nvidia_repo.driver_package_version(OLD)}
        # The new snapshot, shipped to the mirror and made apt's source (base), then the upgrade.
        sync(str(inventory))
        based = CliRunner().invoke(cli, ["apply", "base", "-i", str(inventory)])
        assert based.exit_code == 0, based.output
        for version in (NEW, OLD):
            pinned.write_text(f"nvidia_driver_version: '{version}'\n")
            code, run = gpu_nodes(str(inventory), *tags)
            check_driver(node, code, run, version)
    finally:
        if set(versions(node, DRIVER_PACKAGES).values()) != {nvidia_repo.driver_package_version(OLD)}:
            code, run = gpu_nodes(lab_inventory, *tags)
            assert code == 0, run["failures"]


def check_driver(node: testinfra.host.Host, code: int, run: dict, version: str) -> None:
    assert code == 0, run["failures"]
    assert set(versions(node, DRIVER_PACKAGES).values()) == {nvidia_repo.driver_package_version(version)}, (
        version
    )
    assert held(node) >= set(DRIVER_PACKAGES)
    smi = node.check_output("nvidia-smi --query-gpu=driver_version --format=csv,noheader")
    assert smi.split()[0] == version
    assert node.service("nvidia-fabricmanager").is_running
    # `apt upgrade` must not move a pinned, held driver.
    assert "nvidia" not in node.check_output("apt-get -s upgrade | grep ^Inst || true")


INCOMPATIBLE_CUDA = f"CUDA 13.0.0 needs driver >= 580.65.06, the node gets driver {OLD}"
MISSING_HEADERS = "linux-headers-9.9.9-missing (headers of the running kernel"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-e", '{"cuda_toolkit_versions": ["13.0.0"]}'], INCOMPATIBLE_CUDA),
        (["-e", "nvidia_driver_kernel_release=9.9.9-missing"], MISSING_HEADERS),
    ],
)
def test_bad_combinations_fail_before_any_change(
    lab_inventory: str, converged: dict, extra: list[str], message: str
) -> None:
    node = host(lab_inventory, "gpu1")
    before = versions(node, (*DRIVER_PACKAGES, "cuda-toolkit-12-8"))
    code, run = gpu_nodes(lab_inventory, *extra, "--limit", "gpu1")
    assert code == 1
    assert any(message in f["msg"] for f in run["failures"]), run["failures"]
    assert run["hosts"]["gpu1"]["changed"] == 0 and not run["changes"]
    assert versions(node, (*DRIVER_PACKAGES, "cuda-toolkit-12-8")) == before
