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
    state = manager.up(NODES, air_gapped=True, log=lambda _m: None)
    yield state
    manager.down(log=lambda _m: None)


@pytest.fixture(scope="session")
def lab_inventory(lab: object) -> str:
    return str(paths.lab_inventory_dir())


@pytest.fixture(scope="session")
def converged(lab_inventory: str) -> dict:
    """site.yml applied once for the session (the lab's model, engine and package snapshot first); the
    first run's summary."""
    import json

    from click.testing import CliRunner

    from sovinfra.cli import cli

    model = CliRunner().invoke(cli, ["lab", "model"])
    assert model.exit_code == 0, model.output
    synced = CliRunner().invoke(cli, ["mirror", "packages", "sync", "-i", lab_inventory])
    assert synced.exit_code == 0, synced.output
    result = CliRunner().invoke(cli, ["apply", "-i", lab_inventory, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)
