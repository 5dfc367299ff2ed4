"""What sovinfra keeps in an inventory directory (the lock, rebuild records, acceptance runs) is never read
by Ansible as inventory: a real `ansible-inventory` over such a directory lists the inventory's hosts only.
(Without the project's ignore patterns, Ansible's INI plugin reads an acceptance run's junit.xml as hosts.)"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml

from sovinfra.acceptance import rundir
from sovinfra.lab import inventory as lab_inventory
from tests.acceptance_fleet import fleet
from tests.conftest import ROOT


def test_the_lock_records_and_runs_beside_an_inventory_are_not_hosts(tmp_path: Path) -> None:
    inv = tmp_path / "site"
    inv.mkdir()
    hosts = {"all": {"children": {"gpu_nodes": {"hosts": {"gpu1": {"ansible_host": "10.0.0.11"}}}}}}
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    (inv / "sovinfra.lock").write_text(
        yaml.safe_dump({"format": 1, "hosts": {"gpu1": {"class": "gpu_nodes"}}})
    )
    (inv / "rebuilds").mkdir()
    (inv / "rebuilds" / "gpu1-20261203T000000Z.json").write_text(json.dumps({"host": "gpu1", "ok": True}))
    summary, records = fleet(nodes=2, gpus=2)
    rundir.write(inv / "acceptance" / "runs" / summary["run"], summary, records, {"facts.json": b"{}"})
    rundir.accept(inv / "acceptance" / "runs" / summary["run"], inv / "acceptance" / "baseline", force=True)
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    listed = subprocess.run(
        ["ansible-inventory", "-i", str(inv), "--list"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert sorted(json.loads(listed.stdout)["_meta"]["hostvars"]) == ["gpu1"], listed.stdout
    assert "Unable to parse" not in listed.stderr, listed.stderr

    # The lab's inventory takes its runs with it when the lab goes.
    lab_inventory.remove(inv)
    assert not (inv / "acceptance").exists() and not (inv / "rebuilds").exists()
