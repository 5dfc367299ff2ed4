"""One lab for the whole test session, torn down at the end."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from sovinfra import paths
from sovinfra.lab import manager
from sovinfra.lab.state import LabState

NODES = 2


def _lab_possible() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root"
    for tool in ("systemd-nspawn", "debootstrap", "nft", "apt-cacher-ng"):
        if not shutil.which(tool):
            return f"{tool} is not installed (run scripts/setup)"
    return None


@pytest.fixture(scope="session")
def lab() -> Iterator[LabState]:
    reason = _lab_possible()
    if reason:
        pytest.skip(reason)
    state = manager.up(NODES, log=lambda _m: None)
    yield state
    manager.down(log=lambda _m: None)


@pytest.fixture(scope="session")
def lab_inventory(lab: object) -> str:
    return str(paths.lab_inventory_dir())


@pytest.fixture(scope="session")
def converged(lab_inventory: str) -> dict:
    """site.yml applied once for the session (the lab's model and engine first); the first run's summary."""
    import json

    from click.testing import CliRunner

    from sovinfra.cli import cli

    model = CliRunner().invoke(cli, ["lab", "model"])
    assert model.exit_code == 0, model.output
    result = CliRunner().invoke(cli, ["apply", "-i", lab_inventory, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)
