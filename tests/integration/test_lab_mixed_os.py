"""Debian 12 and Debian 13 in one site: a mixed lab (the mirror host and gpu1 on bookworm, gpu2 on trixie)
converges, converges again with nothing changed, and passes `verify health` and `verify load` on both.

It brings up a lab of its own (the session's lab is air-gapped: its package snapshot holds one release),
so it is marked lab_last and runs after the session's lab is down; it never touches a lab it did not
bring up, and takes its own down at the end.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from sovinfra import paths
from sovinfra.cli import cli
from sovinfra.lab import manager
from tests.conftest import missing
from tests.integration.conftest import _lab_possible

pytestmark = [pytest.mark.lab, pytest.mark.lab_last]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def on(host: str, command: str) -> str:
    return subprocess.run(
        [*manager.ssh_argv(host), command], capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture(scope="module")
def mixed_lab() -> Iterator[dict]:
    reason = _lab_possible()
    if reason:
        missing(reason)
    if manager.is_up():
        missing("a lab is up: this test brings up a mixed lab of its own and never touches another")
    up = invoke("lab", "up", "--nodes", "2", "--release", "mixed", "--apt-proxy", "--json")
    try:
        assert up.exit_code == 0, up.output
        yield json.loads(up.stdout)
    finally:
        down = invoke("lab", "down")
        assert down.exit_code == 0, down.output


@pytest.fixture(scope="module")
def converged(mixed_lab: dict) -> list[dict]:
    """The lab's model and engine (wheels for Python 3.11 and 3.13), then site.yml twice."""
    model = invoke("lab", "model")
    assert model.exit_code == 0, model.output
    runs = []
    for _ in range(2):
        result = invoke("apply", "-i", str(paths.lab_inventory_dir()), "--json")
        assert result.exit_code == 0, result.output
        runs.append(json.loads(result.stdout))
    return runs


def test_hosts_run_the_release_asked_for(mixed_lab: dict) -> None:
    releases = {name: host["release"] for name, host in mixed_lab["hosts"].items()}
    assert releases == {"mirror1": "bookworm", "gpu1": "bookworm", "gpu2": "trixie"}
    for name, version in (("mirror1", "12"), ("gpu1", "12"), ("gpu2", "13")):
        assert f'VERSION_ID="{version}"' in on(name, "cat /etc/os-release")


def test_an_air_gapped_mixed_lab_is_refused_and_nothing_changes(mixed_lab: dict) -> None:
    result = invoke("lab", "up", "--nodes", "2", "--air-gapped")
    assert result.exit_code != 0
    assert "--release mixed" in result.output and "Traceback" not in result.output
    status = json.loads(invoke("lab", "status", "--json").stdout)
    assert all(h["running"] for h in status["hosts"]) and len(status["hosts"]) == 3
    assert "base_apt_proxy_url" in (paths.lab_inventory_dir() / "group_vars" / "all.yml").read_text()


def test_site_converges_then_nothing_changes(converged: list[dict]) -> None:
    first, second = converged
    assert first["ok"] and first["hosts"]["gpu2"]["changed"] > 0
    assert {h: r["changed"] for h, r in second["hosts"].items()} == {"gpu1": 0, "gpu2": 0, "mirror1": 0}


def test_each_node_gets_its_releases_packages(converged: list[dict]) -> None:
    """NVIDIA's repository for the node's own release, and the engine venv on the node's own Python."""
    for host, distro, python in (("gpu1", "debian12", "3.11"), ("gpu2", "debian13", "3.13")):
        sources = on(host, "cat /etc/apt/sources.list.d/sovinfra-nvidia-cuda.list")
        assert f"/packages/cuda/repos/{distro}/x86_64" in sources, sources
        venvs = on(host, "ls -d /opt/sovinfra/engines/*/lib/python*")
        assert f"/lib/python{python}" in venvs, venvs
        assert "hi" in on(host, "dpkg-query -W -f='${db:Status-Abbrev}' nvidia-open")


def test_both_releases_verify(converged: list[dict]) -> None:
    health = invoke("verify", "health", "-i", str(paths.lab_inventory_dir()), "--json")
    assert health.exit_code == 0, health.output
    assert not json.loads(health.stdout)["failed_hosts"]
    load = invoke("verify", "load", "-i", str(paths.lab_inventory_dir()), "--json")
    assert load.exit_code == 0, load.output
    endpoints = json.loads(load.stdout)["endpoints"]
    assert {e["host"] for e in endpoints if e["passed"]} == {"gpu1", "gpu2", "mirror1"}
    assert all(e["summary"]["requests_ok"] == e["summary"]["requests"] > 0 for e in endpoints)
