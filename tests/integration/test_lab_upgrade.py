"""Rolling driver upgrades on the lab (`sovinfra upgrade`) with a client streaming through the site endpoint.

- 570.124.06 -> 570.133.20 across both GPU nodes one at a time: no request fails, each node is drained out
  of the site endpoint and comes back, versions upgraded and held, health verified; a second run has
  nothing to do.
- Back again with a fault injected on the first batch's node: refused while the node is unhealthy; told
  to go ahead, the rollout stops at that node (left drained) while the other node keeps serving; with
  the fault repaired, a re-run continues where it stopped.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import testinfra
from click.testing import CliRunner

from sovinfra import paths
from sovinfra.cli import cli
from sovinfra.lab import model as lab_model
from sovinfra.lab import nvidia_repo
from tests import openai_http
from tests.integration.conftest import gpu_profile, put_gpu_profile, set_gpu
from tests.integration.test_lab_gateway import GATEWAY, servers

pytestmark = pytest.mark.lab
OLD, NEW = nvidia_repo.DRIVER_VERSIONS
VAULT = str(paths.lab_dir() / "vault-password")
NODES = ("gpu1", "gpu2")


def run(*args: str) -> tuple[int, dict, str]:
    result = CliRunner().invoke(cli, [*args, "--json"])
    try:
        doc = json.loads(result.stdout)
    except ValueError:
        doc = {}
    return result.exit_code, doc, result.output


def upgrade(inventory: str, *args: str) -> tuple[int, dict, str]:
    return run("upgrade", "-i", inventory, "--vault-password-file", VAULT, *args)


def driver(inventory: str, name: str) -> str:
    node = testinfra.get_host(f"ansible://{name}", ansible_inventory=f"{inventory}/hosts.yml")
    return node.check_output("dpkg-query -W -f '${Version}' nvidia-driver")


def held(inventory: str, name: str) -> bool:
    node = testinfra.get_host(f"ansible://{name}", ansible_inventory=f"{inventory}/hosts.yml")
    return "nvidia-driver" in node.check_output("apt-mark showhold").split()


def snapshot_for(inventory: str) -> None:
    """The inventory's pins in a new package snapshot, made the hosts' source (as an operator would)."""
    for args in (("mirror", "packages", "sync", "-i", inventory), ("apply", "base", "-i", inventory)):
        result = CliRunner().invoke(cli, list(args))
        assert result.exit_code == 0, result.output


class Client(threading.Thread):
    """Streams completions through the site endpoint, one after another, until stopped; watches the
    replicas' state at the gateway meanwhile."""

    def __init__(self, key: str) -> None:
        super().__init__(daemon=True)
        self.key = key
        self.results: list[tuple[int, bool]] = []
        self.seen: dict[str, set[str]] = {n: set() for n in NODES}
        self.stop = threading.Event()
        self.watcher = threading.Thread(target=self.watch, daemon=True)

    def run(self) -> None:
        self.watcher.start()
        body = {"model": "tiny", "prompt": "the rack", "max_tokens": 16, "stream": True}
        while not self.stop.is_set():
            status, data = openai_http.call(GATEWAY + "/v1/completions", self.key, body, timeout=60)
            self.results.append((status, status == 200 and b"data: [DONE]" in data))

    def watch(self) -> None:
        while not self.stop.is_set():
            for name, row in servers().items():
                self.seen[name].add(row["status"].split()[0])
            time.sleep(1)

    def finish(self) -> None:
        self.stop.set()
        self.join(90)
        self.watcher.join(30)


@pytest.fixture(scope="module")
def key(lab_inventory: str, converged: dict) -> Iterator[str]:
    result = CliRunner().invoke(cli, ["apply", "inference", "-i", lab_inventory])
    assert result.exit_code == 0, result.output
    yield lab_model.api_key(Path(lab_inventory))
    # Whatever failed: the lab's own pins and snapshot, every node back in the site endpoint.
    if any(driver(lab_inventory, n) != nvidia_repo.driver_package_version(OLD) for n in NODES) or set(
        states().values()
    ) != {"UP"}:
        snapshot_for(lab_inventory)
        code, _, output = upgrade(lab_inventory, "--allow-unhealthy")
        assert code == 0, output


@pytest.fixture
def pinned_new(lab_inventory: str, tmp_path: Path) -> str:
    """A copy of the lab's inventory with the new driver pinned for the GPU nodes, its snapshot the hosts'."""
    inventory = tmp_path / "lab"
    shutil.copytree(lab_inventory, inventory)
    (inventory / "group_vars" / "gpu_nodes.yml").write_text(f"nvidia_driver_version: '{NEW}'\n")
    snapshot_for(str(inventory))
    return str(inventory)


def states() -> dict[str, str]:
    return {name: row["status"].split()[0] for name, row in servers().items()}


def test_a_rolling_driver_upgrade_fails_no_request(key: str, pinned_new: str) -> None:
    code, plan, output = upgrade(pinned_new, "--check")
    assert code == 0, output
    assert [list(b["hosts"]) for b in plan["plan"]] == [["gpu1"], ["gpu2"]]
    planned = [tasks for b in plan["plan"] for tasks in b["hosts"].values()]
    assert all("Pin exact versions: nvidia-driver" in tasks for tasks in planned), plan
    assert {driver(pinned_new, n) for n in NODES} == {
        nvidia_repo.driver_package_version(OLD)
    }  # the check changed nothing ...
    assert states() == {"gpu1": "UP", "gpu2": "UP"}  # ... and drained nothing

    client = Client(key)
    client.start()
    try:
        code, doc, output = upgrade(pinned_new)
    finally:
        client.finish()
    assert code == 0, output
    assert [[(r["host"], r["result"]) for r in b["hosts"]] for b in doc["batches"]] == [
        [("gpu1", "upgraded")],
        [("gpu2", "upgraded")],
    ]
    records = list((Path(pinned_new) / "upgrades").glob("*.json"))
    assert len(records) == 1 and json.loads(records[0].read_text())["batches"] == doc["batches"]
    failed = [r for r in client.results if not r[1]]
    assert len(client.results) >= 10 and not failed, (len(client.results), failed[:5])
    for name in NODES:
        assert driver(pinned_new, name) == nvidia_repo.driver_package_version(NEW) and held(
            pinned_new, name
        ), name
        assert "MAINT" in client.seen[name], (name, client.seen)  # drained out of the site endpoint ...
    assert states() == {"gpu1": "UP", "gpu2": "UP"}  # ... and back
    code, health, output = run("verify", "health", "-i", pinned_new)
    assert code == 0 and not health["failed_hosts"], output
    # Nothing left to do: a second run changes and drains nothing.
    code, again, output = upgrade(pinned_new)
    assert code == 0 and again["plan"] == [] and "batches" not in again, output


def test_a_failed_batch_stops_the_rollout_and_a_rerun_continues(
    key: str, lab_inventory: str, gpus_restored: None
) -> None:
    snapshot_for(lab_inventory)  # the lab's own pin (the old driver) and snapshot again
    own = gpu_profile("gpu1")
    set_gpu("gpu1", "fault-xid-79")
    code, _, output = upgrade(lab_inventory)
    assert code == 2 and "gpu1" in output and "--allow-unhealthy" in output, output
    assert driver(lab_inventory, "gpu1") == driver(lab_inventory, "gpu2")  # refused before any change

    before = driver(lab_inventory, "gpu2")
    code, doc, output = upgrade(lab_inventory, "--allow-unhealthy")
    assert code == 1, output
    first, second = doc["batches"]
    assert first["hosts"][0]["host"] == "gpu1" and first["hosts"][0]["result"] == "failed", doc
    assert "unhealthy" in first["hosts"][0]["why"], first
    assert second["hosts"] == [{"host": "gpu2", "result": "not reached"}]
    assert driver(lab_inventory, "gpu2") == before  # the rest of the site untouched ...
    assert states() == {"gpu1": "MAINT", "gpu2": "UP"}
    status, body = openai_http.call(
        GATEWAY + "/v1/completions", key, {"model": "tiny", "prompt": "x", "max_tokens": 4}, timeout=60
    )
    assert status == 200, body  # ... and serving

    put_gpu_profile("gpu1", own)  # repaired (its own GPUs again: the CDI spec names them)
    code, doc, output = upgrade(lab_inventory)
    assert code == 0, output
    assert [[r["host"] for r in b["hosts"]] for b in doc["batches"]] == [["gpu1"], ["gpu2"]]
    assert {driver(lab_inventory, n) for n in NODES} == {nvidia_repo.driver_package_version(OLD)}
    assert states() == {"gpu1": "UP", "gpu2": "UP"}
