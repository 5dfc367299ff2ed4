"""The lab end to end: hosts up, site converged, idempotent, check mode clean, base state verified."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import testinfra
from click.testing import CliRunner

from sovinfra.cli import cli
from sovinfra.lab import cgroups, config, hosts, manager
from sovinfra.lab.state import LabState
from sovinfra.mirror import apt_snapshots

pytestmark = pytest.mark.lab


def apply_json(inventory: str, *args: str) -> dict:
    result = CliRunner().invoke(cli, ["apply", "-i", inventory, "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_lab_hosts_answer(lab: LabState) -> None:
    result = CliRunner().invoke(cli, ["lab", "status", "--json"])
    rows = json.loads(result.output)["hosts"]
    assert {r["name"] for r in rows} == {"mirror1", "gpu1", "gpu2"}
    assert all(r["running"] and r["ssh"] for r in rows)


def test_up_twice_duplicates_nothing(lab: LabState) -> None:
    before = {n: h.pid for n, h in manager.state.load().hosts.items()}
    manager.up(2, log=lambda _m: None)
    after = {n: h.pid for n, h in manager.state.load().hosts.items()}
    assert before == after
    assert len(hosts.stray_pids()) == 3
    links = subprocess.run(["ip", "-o", "link", "show", "type", "bridge"], capture_output=True, text=True)
    assert links.stdout.count(f"{config.BRIDGE}:") == 1


def test_each_host_is_charged_its_own_cpu(lab: LabState, lab_inventory: str) -> None:
    """The converge benchmark splits the lab hosts' CPU from the control node's by the hosts' cgroups."""
    node = testinfra.get_host("ansible://gpu1", ansible_inventory=f"{lab_inventory}/hosts.yml")
    before = {name: cgroups.cpu_seconds(name) for name in ("gpu1", "gpu2")}
    node.run("timeout 2 sh -c 'while :; do :; done'")
    spent = {name: cgroups.cpu_seconds(name) - before[name] for name in before}
    assert spent["gpu1"] > 1.0, spent  # two seconds of a busy loop, on a core shared with the suite
    assert spent["gpu2"] < 0.5 * spent["gpu1"], spent


def test_site_converges_then_reports_nothing_to_change(lab_inventory: str, converged: dict) -> None:
    assert converged["ok"] and converged["complete"]
    # Converge once more: whatever changed the hosts since the session's converge is settled first.
    assert apply_json(lab_inventory)["ok"]
    second = apply_json(lab_inventory)
    assert second["ok"]
    assert {h: r["changed"] for h, r in second["hosts"].items()} == {"gpu1": 0, "gpu2": 0, "mirror1": 0}
    checked = apply_json(lab_inventory, "--check")
    assert checked["ok"] and not checked["changes"]


def test_check_mode_on_fresh_hosts_plans_and_writes_nothing(fresh_check: dict) -> None:
    """Before the first converge: every stage plans (the mirror that would serve packages, keys and
    wheels is itself only planned) and nothing lands on a host."""
    assert fresh_check["exit_code"] == 0, fresh_check["output"]
    summary = fresh_check["summary"]
    assert summary["ok"] and summary["complete"]
    assert all(r["changed"] > 0 for r in summary["hosts"].values())  # the whole site is still to do
    assert fresh_check["written"] == {"gpu1": False, "mirror1": False}


@pytest.fixture(scope="module")
def node(lab_inventory: str) -> testinfra.host.Host:
    return testinfra.get_host("ansible://gpu1", ansible_inventory=f"{lab_inventory}/hosts.yml")


def test_base_state(node: testinfra.host.Host, lab: LabState, converged: dict) -> None:
    for package in ("curl", "gnupg", "pciutils", "systemd-timesyncd"):
        assert node.package(package).is_installed, package
    # apt knows one source: the site's snapshot on the mirror host, signed by the site key; no proxy.
    mirror = next(h.address for h in lab.hosts.values() if "model_mirror" in h.groups)
    source = node.file("/etc/apt/sources.list.d/sovinfra-site.sources")
    assert source.contains(f"URIs: http://{mirror}/packages/site")
    assert source.contains("Signed-By: /etc/apt/keyrings/sovinfra-site.gpg")
    assert not node.file("/etc/apt/apt.conf.d/01sovinfra-proxy").exists
    assert not node.file("/etc/apt/sources.list").exists
    others = node.check_output("ls /etc/apt/sources.list.d").split()
    assert all(name.startswith("sovinfra-") for name in others), others
    sshd = node.check_output("sshd -T")
    assert "passwordauthentication no" in sshd
    assert "permitrootlogin without-password" in sshd or "permitrootlogin prohibit-password" in sshd
    assert "maxauthtries 3" in sshd
    assert node.service("systemd-timesyncd").is_enabled


def test_lab_hosts_are_air_gapped(node: testinfra.host.Host, lab: LabState, converged: dict) -> None:
    assert "default" not in node.check_output("ip route")
    # The gateway offers nothing (no apt proxy); apt still works, from the mirror host's snapshot.
    probe = f"import socket; socket.create_connection(('{lab.gateway}', {config.APT_PROXY_PORT}), timeout=2)"
    assert node.run(f'python3 -c "{probe}"').rc != 0
    update = node.run("apt-get -q update")
    assert update.rc == 0 and "Err:" not in update.stdout, update.stdout + update.stderr
    # What the site needs is there; what it does not need is not (the snapshot is filtered to the need).
    assert node.run("apt-get -q -y -d --reinstall install curl").rc == 0
    assert node.run("apt-cache show cowsay").rc != 0


def test_a_snapshot_holds_everything_the_hosts_run(
    lab_inventory: str, converged: dict, tmp_path: Path
) -> None:
    """`--installed`: a host rebuilt from the snapshot can have back every package it runs, NVIDIA's
    (at their pinned versions) included. Synced into a store of its own: the lab's current stays."""
    store = tmp_path / "store"
    synced = CliRunner().invoke(
        cli,
        ["mirror", "packages", "sync", "-i", lab_inventory, "--installed", "--json", "--store", str(store)],
    )
    assert synced.exit_code == 0, synced.output
    snap = json.loads(synced.stdout.strip().splitlines()[-1])["id"]
    held = {k.split("_", 1)[0] for k in apt_snapshots.packages_of(apt_snapshots.Aptly(store), f"site-{snap}")}
    for name in ("gpu1", "mirror1"):
        node = testinfra.get_host(f"ansible://{name}", ansible_inventory=f"{lab_inventory}/hosts.yml")
        listing = node.check_output("dpkg-query -W -f '${db:Status-Abbrev} ${Package}\\n'").splitlines()
        running = {line.split()[1] for line in listing if line.split()[0][1:2] == "i"}
        assert {"libc6", "openssh-server"} <= running
        assert running <= held, sorted(running - held)


def test_facts_through_pyinfra(lab_inventory: str) -> None:
    result = CliRunner().invoke(cli, ["facts", "-i", lab_inventory, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)["hosts"]
    assert set(doc) == {"mirror1", "gpu1", "gpu2"}
    assert all(h["reachable"] and h["facts"]["os_id"] == "debian" for h in doc.values())
