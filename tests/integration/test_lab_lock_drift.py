"""The lock of the converged lab, and drift: each kind injected is reported with its host and item, and
a converge repairs what the roles own."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import testinfra
import yaml
from click.testing import CliRunner

from sovinfra.acceptance import rundir
from sovinfra.cli import cli
from sovinfra.cli.mirror import default_store
from sovinfra.lock import schema
from sovinfra.mirror import apt_snapshots, wheels

pytestmark = pytest.mark.lab
GPU = "gpu_nodes+inference"
# The lab's mirror host also watches the site and is its endpoint.
MIRROR = "inference_gateway+model_mirror+monitoring"
PROBE = "sovinfra-drift-probe"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def host(inventory: str, name: str) -> testinfra.host.Host:
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=f"{inventory}/hosts.yml")


@pytest.fixture(scope="module")
def locked(lab_inventory: str, converged: dict) -> Iterator[Path]:
    # Whatever state the lab is in: converge first so the lock records a settled site.
    code, out = run("apply", "-i", lab_inventory, "--json")
    assert code == 0, out
    code, out = run("lock", "-i", lab_inventory, "--json")
    assert code == 0, out
    path = Path(lab_inventory) / schema.FILE_NAME
    yield path
    path.unlink(missing_ok=True)
    # Hosts converged under the lock carry its pins: settle them without it, as the lab was before (the
    # next file may start by proving a converge changes nothing).
    code, out = run("apply", "-i", lab_inventory, "--json")
    assert code == 0, out


def test_lock_records_the_site_and_is_stable(lab_inventory: str, locked: Path) -> None:
    doc = schema.load(locked)
    store = default_store()
    assert doc["packages_snapshot"] == apt_snapshots.current(store)
    gpu = doc["classes"][GPU]
    assert gpu["hosts"] == ["gpu1", "gpu2"] and doc["classes"][MIRROR]["hosts"] == ["mirror1"]
    assert gpu["nvidia"]["driver"]["resolved"].startswith(gpu["nvidia"]["driver"]["requested"])
    assert "nvidia-driver" in gpu["holds"]
    # Debian's packages and NVIDIA's carry the sha256 of the .deb the snapshot holds.
    assert len(gpu["packages"]["libc6"]["sha256"]) == 64
    assert len(gpu["packages"]["nvidia-driver"]["sha256"]) == 64
    assert len(gpu["packages"]["nvidia-container-toolkit"]["sha256"]) == 64
    # The agent venv came from the site wheelhouse: each of its distributions by the sha256 of its wheel.
    agent = {wheels.normalize(d): v for d, v in gpu["venvs"]["/opt/sovinfra/venv"].items()}
    assert all(len(agent[d]["sha256"]) == 64 for d in ("sovinfra", "click", "pyyaml", "nvidia-ml-py")), agent
    [pin] = gpu["models"]
    assert doc["models"][pin] and all(len(sha) == 64 for sha in doc["models"][pin].values())
    assert any(u.startswith("sovinfra-inference-tiny") for u in doc["hosts"]["gpu1"]["units"])
    text = locked.read_text()
    assert run("lock", "-i", lab_inventory)[0] == 0
    assert locked.read_text() == text  # an unchanged site writes the same bytes
    code, out = run("lock", "-i", lab_inventory, "--check")
    assert code == 0, out


def test_lock_check_names_what_the_inventory_changed(
    lab_inventory: str, locked: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "inventory"
    shutil.copytree(lab_inventory, copy)
    (copy / "group_vars" / "gpu_nodes.yml").write_text(
        yaml.safe_dump({"nvidia_driver_branch": "580", "nvidia_driver_version": "580.65.06"})
    )
    code, out = run("lock", "-i", str(copy), "--check")
    assert code == 1 and "-      driver: 570." in out and "+      driver: 580.65.06" in out, out
    (copy / schema.FILE_NAME).write_text(locked.read_text()[:300])  # truncated by hand
    code, out = run("drift", "-i", str(copy))
    assert code == 2 and str(copy / schema.FILE_NAME) in out, out


def test_injected_drift_is_reported_and_a_converge_repairs_it(lab_inventory: str, locked: Path) -> None:
    code, out = run("drift", "-i", lab_inventory)
    assert code == 0 and "0 drifted item(s) on 3 host(s)" in out, out
    gpu1, gpu2 = host(lab_inventory, "gpu1"), host(lab_inventory, "gpu2")
    [pin] = schema.load(locked)["classes"][GPU]["models"]
    repo, commit = pin.split("@")
    cache = f"/var/lib/sovinfra/hf-cache/models--{repo.replace('/', '--')}/snapshots/{commit}"
    blob = gpu1.check_output("readlink -f %s/*.gguf", cache)  # the pinned commit (a cache may hold others)
    gpu1.check_output("printf 'X' | dd of=%s bs=1 seek=4096 conv=notrunc status=none", blob)
    gpu2.check_output("apt-mark unhold nvidia-smi")
    gpu2.check_output("echo '# edited' >> /etc/pip.conf")
    gpu2.check_output("systemctl stop sovinfra-inference-tiny")
    gpu2.check_output("echo '# edited' >> /etc/default/ssh")
    gpu2.check_output(
        "mkdir -p /tmp/probe/DEBIAN && printf 'Package: %s\\nVersion: 1.0\\nArchitecture: all\\n"
        "Maintainer: lab <lab@lab>\\nDescription: drift probe\\n' > /tmp/probe/DEBIAN/control && "
        "dpkg-deb -b /tmp/probe /tmp/probe.deb >/dev/null && dpkg -i /tmp/probe.deb >/dev/null",
        PROBE,
    )
    try:
        code, out = run("drift", "-i", lab_inventory, "--json")
        assert code == 1, out
        doc = json.loads(out)
        found = {(i["host"], i["kind"], i["what"]) for i in doc["items"]}
        assert found == {
            ("gpu1", "modified", f"model {pin}"),
            ("gpu2", "modified", "hold nvidia-smi"),
            ("gpu2", "modified", "file /etc/pip.conf"),
            ("gpu2", "modified", "unit sovinfra-inference-tiny.service"),
            ("gpu2", "modified", "package file /etc/default/ssh"),
            ("gpu2", "extra", f"package {PROBE}"),
        }, found
        model = next(i for i in doc["items"] if i["host"] == "gpu1")
        assert "does not match the verified" in model["found"]  # the flipped byte, found by re-hashing
        assert doc["seconds"] > 0 and doc["hosts"] == 3
        # Check mode sees what the roles would put back, and only that, and changes nothing; it cannot see
        # the flipped model byte (the pull is a command it skips): drift can.
        code, out = run("apply", "-i", lab_inventory, "--check", "--json")
        assert code == 0, out
        planned = {(c["host"], c["task"].split(" : ")[-1]) for c in json.loads(out)["changes"]}
        # The lock was written after the last converge: its pins are pending on every host, and its
        # hash lists on every engine host.
        pins = {(h, "Pin the locked package versions") for h in ("gpu1", "gpu2", "mirror1")}
        pins |= {
            (h, "Write each locked engine venv's distributions with their hashes") for h in ("gpu1", "gpu2")
        }
        assert planned == pins | {
            ("gpu2", "Apt mark hold nvidia-open, nvidia-driver, nvidia-kernel-open-dkms, libnvidia-ml1, "
                     "nvidia-smi, nvidia-persistenced"),
            ("gpu2", "Point pip at the site wheelhouse, and only there"),
            ("gpu2", "Start each service, restarting those that changed"),
        }, planned  # fmt: skip
        code, again = run("drift", "-i", lab_inventory, "--json")
        assert {(i["host"], i["kind"], i["what"]) for i in json.loads(again)["items"]} == found
    finally:
        gpu2.check_output("sed -i '/^# edited$/d' /etc/default/ssh")
    code, out = run("apply", "-i", lab_inventory, "--json")
    assert code == 0, out
    # With a lock, apt holds every package from the snapshot at its locked version.
    pins = gpu2.file("/etc/apt/preferences.d/sovinfra-lock").content_string
    libc6 = schema.load(locked)["classes"][GPU]["packages"]["libc6"]["version"]
    assert f"Package: libc6\nPin: version {libc6}\nPin-Priority: 1001" in pins
    assert f"*** {libc6} 1001" in gpu2.check_output("apt-cache policy libc6")
    # The roles own the model, hold, file and unit; an extra package is the operator's to remove.
    code, out = run("drift", "-i", lab_inventory, "--json")
    assert [(i["host"], i["what"]) for i in json.loads(out)["items"]] == [("gpu2", f"package {PROBE}")], out
    gpu2.check_output("dpkg -r %s >/dev/null", PROBE)
    code, out = run("drift", "-i", lab_inventory)
    assert code == 0, out


def test_apply_refuses_what_the_lock_cannot_cover(lab_inventory: str, locked: Path, tmp_path: Path) -> None:
    copy = tmp_path / "inventory"
    shutil.copytree(lab_inventory, copy)
    hosts = yaml.safe_load((copy / "hosts.yml").read_text())
    hosts["all"]["children"]["storage"] = {"hosts": {"gpu1": {}}}  # gpu1 becomes a new kind of host
    (copy / "hosts.yml").write_text(yaml.safe_dump(hosts))
    code, out = run("apply", "-i", str(copy), "--check")
    assert code == 2 and "hosts.gpu1: no class 'gpu_nodes+inference+storage'" in out, out
    lock = schema.load(copy / schema.FILE_NAME)
    lock["packages_snapshot"] = "20200101T000000Z"
    schema.write(copy / schema.FILE_NAME, lock)
    code, out = run("apply", "-i", str(copy), "--check", "--limit", "gpu2")
    assert code == 2 and "packages_snapshot: 20200101T000000Z is no longer in the mirror store" in out, out
    lock["packages_snapshot"] = schema.load(locked)["packages_snapshot"]
    lock["hosts"]["gpu1"]["machine"] = "00000000-0000-0000-0000-000000000000"
    schema.write(copy / schema.FILE_NAME, lock)
    shutil.copy(Path(lab_inventory) / "hosts.yml", copy / "hosts.yml")
    code, out = run("rebuild", "gpu1", "-i", str(copy), "--yes")
    assert code == 2 and "gpu1: not the machine the lock recorded: machine (DMI product uuid)" in out, out
    # --reinstall: provision comes first and refuses (this site has no netboot host): nothing else runs,
    # the record says so.
    code, out = run("rebuild", "gpu1", "-i", str(copy), "--yes", "--reinstall", "--json")
    record = json.loads(out[out.index("{") :])
    assert code == 1 and not record["ok"], out
    assert [(s["step"], s["exit_code"]) for s in record["steps"]] == [("reinstall", 2)], record["steps"]
    assert record["identity"] == {"machine": None, "gpus_before": None, "differs": []}


def test_dr_drill_a_wiped_gpu_node_is_rebuilt_from_the_lock(lab_inventory: str, locked: Path) -> None:
    from sovinfra.lab import manager

    egress = manager.egress_packets()
    # gpu2 as it was accepted: the rebuild is judged against these results.
    home = rundir.home(Path(lab_inventory))
    assert not home.exists(), f"{home}: left by someone else; the drill would compare with their baseline"
    try:
        code, out = run("acceptance", "-i", lab_inventory, "--limit", "gpu2", "--accept", "--json")
        assert code == 0, out[-5000:]
        accepted = json.loads(out[out.index("{") :])["run"]
        manager.wipe("gpu2", log=lambda _m: None)
        gpu2 = host(lab_inventory, "gpu2")
        assert not gpu2.file("/opt/sovinfra/venv").exists
        assert not gpu2.file("/var/lib/sovinfra/hf-cache").exists
        code, out = run("rebuild", "gpu2", "-i", lab_inventory, "--yes", "--json")
        record = json.loads(out[out.index("{") :]) if "{" in out else {}
        assert code == 0, out[-5000:]
        assert [(s["step"], s["exit_code"]) for s in record["steps"]] == [
            ("converge", 0), ("drift", 0), ("acceptance", 0)
        ]  # fmt: skip
        judged = record["steps"][-1]["result"]
        assert record["baseline"] == judged["baseline"] == accepted
        _, records = rundir.load(Path(judged["path"]))
        compared = {(r.check, r.status) for r in records if r.stage == "baseline" and r.host == "gpu2"}
        # The same GPUs (none missing, none new) and every endpoint measure compared within tolerance.
        assert {check for check, _ in compared} == {"ttft p50", "tokens/s"}, compared
        assert {status for _, status in compared} == {"pass"}, compared
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert record["ok"] and record["packages_snapshot"] == schema.load(locked)["packages_snapshot"]
    assert list((Path(lab_inventory) / "rebuilds").glob("gpu2-*.json"))
    # The engine venv came back hash-checked: every distribution the lock holds, by sha256, and no other.
    [(venv, dists)] = [
        (v, d) for v, d in schema.load(locked)["classes"][GPU]["venvs"].items() if "engines" in v
    ]
    wanted = gpu2.file(f"{venv}.requirements").content_string
    for name, dist in dists.items():
        if name not in ("pip", "setuptools", "wheel"):
            assert f"{name}=={dist['version']} --hash=sha256:{dist['sha256']}" in wanted, name
    code, out = run("drift", "-i", lab_inventory)  # every host, gpu2 included, matches the lock
    assert code == 0, out
    assert manager.egress_packets() == egress == 0  # from the site's mirror alone


def test_dr_drill_the_mirror_host_restored_from_the_offline_bundle(
    lab_inventory: str, locked: Path, tmp_path: Path
) -> None:
    """The mirror host's disk dies and the control store with it: the offline bundle, imported into an
    empty store, brings the mirror host back, and a GPU node is then rebuilt from the restored mirror."""
    from sovinfra.lab import manager
    from sovinfra.lab import model as lab_model

    egress = manager.egress_packets()
    store = default_store()
    bundle, restored = tmp_path / "bundle", tmp_path / "restored"
    code, out = run("mirror", "export", str(bundle), "--store", str(store))
    assert code == 0, out
    code, out = run("mirror", "import", str(bundle), "--store", str(restored))
    assert code == 0, out
    # The site from the restored store only: the inventory (and its lock) with site_store pointing there.
    copy = tmp_path / "inventory"
    shutil.copytree(lab_inventory, copy)
    settings = yaml.safe_load((copy / "group_vars" / "all.yml").read_text())
    (copy / "group_vars" / "all.yml").write_text(yaml.safe_dump({**settings, "site_store": str(restored)}))
    for name in ("mirror1", "gpu1"):
        manager.wipe(name, log=lambda _m: None)
        # A copy of the lab's inventory is not the lab's: its vaulted API key needs the password named.
        vault = ["--vault-password-file", str(lab_model.vault_password_file())]
        code, out = run("rebuild", name, "-i", str(copy), "--yes", "--json", *vault)
        record = json.loads(out[out.index("{") :]) if "{" in out else {}
        assert code == 0 and record["ok"], out[-5000:]
    mirror1 = host(lab_inventory, "mirror1")
    assert mirror1.service("nginx").is_running
    code, out = run("drift", "-i", str(copy))  # every host matches the lock, the mirror's packages included
    assert code == 0, out
    assert manager.egress_packets() == egress == 0
