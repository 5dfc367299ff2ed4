"""One lab for the whole test session, air-gapped (packages only from the site's snapshot), torn down
at the end."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from sovinfra import paths
from sovinfra.lab import manager
from sovinfra.lab.state import LabState
from tests.conftest import missing

NODES = 2


def _lab_possible() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root"
    for tool in ("systemd-nspawn", "debootstrap", "nft", "apt-cacher-ng"):
        if not shutil.which(tool):
            return f"{tool} is not installed (run scripts/setup)"
    return None


_BROUGHT_UP: list[bool] = []


@pytest.fixture(scope="session")
def lab() -> Iterator[LabState]:
    """The session's lab; torn down at the end only if this session brought it up (never someone else's)."""
    reason = _lab_possible()
    if reason:
        missing(reason)
    _BROUGHT_UP.append(not manager.is_up())
    state = manager.up(NODES, air_gapped=True, log=lambda _m: None)
    yield state
    if _BROUGHT_UP[0]:
        manager.down(log=lambda _m: None)


@pytest.fixture
def own_lab(lab: LabState) -> LabState:
    """For tests that take the lab down: only a lab this session brought up."""
    if not _BROUGHT_UP[0]:
        missing("the lab was up before this session: its owner takes it down")
    return lab


@pytest.fixture(scope="session")
def lab_inventory(lab: object) -> str:
    return str(paths.lab_inventory_dir())


@pytest.fixture(scope="session")
def fresh_check(lab_inventory: str) -> dict:
    """`apply --check` on the fresh lab, before anything converges it (the lab's model, engine and package
    snapshot made first); what it answered, and whether gpu1 and mirror1 were left untouched."""
    import json
    import subprocess

    from click.testing import CliRunner

    from sovinfra.cli import cli

    model = CliRunner().invoke(cli, ["lab", "model"])
    assert model.exit_code == 0, model.output
    synced = CliRunner().invoke(cli, ["mirror", "packages", "sync", "-i", lab_inventory])
    assert synced.exit_code == 0, synced.output
    result = CliRunner().invoke(cli, ["apply", "-i", lab_inventory, "--check", "--json"])
    written = {
        host: subprocess.run([*manager.ssh_argv(host), f"test -e {path}"], check=False).returncode == 0
        for host, path in (
            ("gpu1", "/etc/apt/sources.list.d/sovinfra-site.sources"),
            ("mirror1", "/srv/sovinfra/packages/site"),
        )
    }
    summary = json.loads(result.stdout) if result.exit_code == 0 else {}
    return {"exit_code": result.exit_code, "output": result.output, "summary": summary, "written": written}


@pytest.fixture(scope="session")
def converged(lab_inventory: str, fresh_check: dict) -> dict:
    """site.yml applied once for the session, after the fresh hosts' check run; the first run's summary."""
    import json

    from click.testing import CliRunner

    from sovinfra.cli import cli

    result = CliRunner().invoke(cli, ["apply", "-i", lab_inventory, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def gpu_profile(host: str) -> str:
    """A lab node's simulated GPUs as they are now (the profile file, base64), for put_gpu_profile."""
    import subprocess

    from sovinfra.lab import config

    read = f"base64 -w0 {config.GPU_PROFILE}"
    return subprocess.run(
        [*manager.ssh_argv(host), read], capture_output=True, text=True, check=True
    ).stdout.strip()


def put_gpu_profile(host: str, profile: str) -> None:
    import subprocess

    from sovinfra.lab import config

    subprocess.run(
        [*manager.ssh_argv(host), f"echo {profile} | base64 -d > {config.GPU_PROFILE}"], check=True
    )


@pytest.fixture
def gpus_restored(lab: LabState) -> Iterator[None]:
    """Whatever GPUs the nodes had before the test, they have again after it."""
    before = {name: gpu_profile(name) for name in ("gpu1", "gpu2")}
    yield
    for name, profile in before.items():
        put_gpu_profile(name, profile)


def set_gpu(host: str, profile: str) -> None:
    """Swap a lab node's simulated GPUs (`sovinfra lab gpu`)."""
    from click.testing import CliRunner

    from sovinfra.cli import cli

    result = CliRunner().invoke(cli, ["lab", "gpu", host, profile])
    assert result.exit_code == 0, result.output
