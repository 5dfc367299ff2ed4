"""Inference on the lab: llama.cpp services from the mirror and wheelhouse only, rolled out host by host."""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import testinfra
import yaml
from click.testing import CliRunner

from sovinfra import atomic
from sovinfra.cli import cli
from sovinfra.cli.mirror import default_store
from sovinfra.lab import model as lab_model
from sovinfra.mirror import publish
from sovinfra.mirror.store import Store
from tests import openai_http

pytestmark = pytest.mark.lab
NODES = {"gpu1": "10.213.7.11", "gpu2": "10.213.7.12"}
UNIT = "sovinfra-inference-tiny"
CONFIG = "/etc/sovinfra/inference/tiny.yaml"


def apply(inventory: str, *args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(cli, ["apply", "inference", "-i", inventory, "--json", *args])
    return result.exit_code, json.loads(result.stdout)


def host(inventory: str, name: str) -> testinfra.host.Host:
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=f"{inventory}/hosts.yml")


def get(url: str, key: str | None, timeout: float = 5.0) -> tuple[int, bytes]:
    return openai_http.call(url, key, timeout=timeout)


def stream(address: str, key: str, max_tokens: int) -> list[str]:
    body = json.dumps({"model": "tiny", "prompt": "the rack", "max_tokens": max_tokens, "stream": True})
    request = urllib.request.Request(
        f"http://{address}:8000/v1/completions",
        data=body.encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    pieces = []
    with urllib.request.urlopen(request, timeout=30) as response:
        for line in response:
            text = line.decode().strip()
            if text.startswith("data: ") and text != "data: [DONE]":
                pieces.append(json.loads(text[6:])["choices"][0]["text"])
    while pieces and not pieces[-1]:
        pieces.pop()  # the closing chunk carries finish_reason, no text
    return pieces


@pytest.fixture
def model_restored(lab_inventory: str) -> Iterator[Path]:
    """The lab model as it was: commits a test adds to the store forgotten, its refs and the inventory's
    pin put back, and the site converged to them again (only when something moved). Yields the store."""
    store = Store(default_store())
    refs = store.repo_dir(lab_model.REPO) / "refs.json"
    pin = Path(lab_inventory) / "group_vars" / "inference.yml"
    before = (store.commits(lab_model.REPO), refs.read_bytes(), pin.read_bytes())
    yield store.root
    added = set(store.commits(lab_model.REPO)) - set(before[0])
    if not added and refs.read_bytes() == before[1] and pin.read_bytes() == before[2]:
        return
    for commit in added:
        (store.repo_dir(lab_model.REPO) / "commits" / f"{commit}.json").unlink()
    atomic.write_bytes(refs, before[1])
    atomic.write_bytes(pin, before[2])
    publish.publish(store)
    for playbook, limit in (("mirror", "mirror1"), ("inference", "all")):
        done = CliRunner().invoke(cli, ["apply", playbook, "-i", lab_inventory, "--limit", limit])
        assert done.exit_code == 0, done.output


@pytest.fixture(scope="module")
def key(lab_inventory: str, converged: dict) -> str:
    # Whatever state the lab is in (hosts restarted, by hand or by a test): a converge waits (readiness gate)
    # until every endpoint serves.
    code, doc = apply(lab_inventory)
    assert code == 0, doc["failures"]
    return lab_model.api_key(Path(lab_inventory))


def test_endpoints_serve_stream_and_refuse_wrong_keys(lab_inventory: str, key: str) -> None:
    for name, address in NODES.items():
        status, body = get(f"http://{address}:8000/v1/models", key)
        assert status == 200 and [m["id"] for m in json.loads(body)["data"]] == ["tiny"], name
        assert get(f"http://{address}:8000/v1/models", "not-the-key")[0] == 401
        assert get(f"http://{address}:8000/v1/models", None)[0] == 401
        pieces = stream(address, key, 12)
        assert len(pieces) == 12 and all(p.strip() for p in pieces)  # real tokens, one per chunk
    gpu1 = host(lab_inventory, "gpu1")
    assert gpu1.socket("tcp://10.213.7.11:8000").is_listening
    assert not gpu1.socket("tcp://0.0.0.0:8000").is_listening  # nothing wider than it must
    props = gpu1.check_output(
        f"systemctl show {UNIT} -p User -p NoNewPrivileges -p ProtectSystem -p PrivateTmp -p Environment"
    )
    for expected in (
        "User=sovinfra-inference",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
    ):
        assert expected in props
    assert "HF_HUB_OFFLINE=1" in props
    for path in ("/etc/sovinfra/inference/tiny.yaml", "/etc/sovinfra/inference/tiny.env"):
        held = gpu1.file(path)  # the README's promise for files that may hold the key
        assert (held.mode, held.user, held.group) == (0o640, "root", "sovinfra-inference"), path
    assert key in gpu1.file(CONFIG).content_string  # where the key is, so the searches below mean something
    # Neither the key nor the lab's vault password in any journal on the node (every unit, the converges').
    password = lab_model.vault_password_file().read_text().strip()
    journal = gpu1.check_output("journalctl --no-pager -o cat | wc -l")
    assert int(journal) > 100
    for secret in (key, password):
        assert gpu1.run("journalctl --no-pager -o cat | grep -cF -- %s", secret).stdout.strip() == "0"
    # pip on the node knows one index: the mirror's wheelhouse.
    assert "index-url = http://10.213.7.10/simple/" in gpu1.file("/etc/pip.conf").content_string
    assert key not in gpu1.check_output(f"systemctl show {UNIT} -p ExecStart -p Environment")


def test_rerun_and_check_mode_change_nothing(lab_inventory: str, key: str) -> None:
    code, again = apply(lab_inventory)
    assert code == 0 and again["changes"] == [], again["changes"]
    code, checked = apply(lab_inventory, "--check")
    assert code == 0 and checked["changes"] == [], checked["changes"]


def _started(lab_inventory: str) -> dict[str, int]:
    return {
        name: int(
            host(lab_inventory, name).check_output(
                f"systemctl show {UNIT} -p ExecMainStartTimestampMonotonic --value"
            )
        )
        for name in NODES
    }


def _stopped(lab_inventory: str, name: str) -> int:
    out = host(lab_inventory, name).check_output(
        f"systemctl show {UNIT} -p InactiveEnterTimestampMonotonic --value"
    )
    return int(out)


def test_revision_change_restarts_one_host_at_a_time(
    lab_inventory: str, key: str, model_restored: Path
) -> None:
    before = _started(lab_inventory)
    result = CliRunner().invoke(cli, ["lab", "model", "--seed", "2", "--json"])
    assert result.exit_code == 0, result.output
    commit = json.loads(result.stdout)["commit"]
    # A site's model update: import, publish on the mirror, then roll out.
    published = CliRunner().invoke(cli, ["apply", "mirror", "-i", lab_inventory, "--limit", "mirror1"])
    assert published.exit_code == 0, published.output
    samples: list[dict[str, bool]] = []
    stop = threading.Event()

    def watch() -> None:  # a client polling both endpoints through the whole rollout
        while not stop.is_set():
            samples.append(
                {n: get(f"http://{a}:8000/v1/models", key, 2.0)[0] == 200 for n, a in NODES.items()}
            )
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        code, doc = apply(lab_inventory)
    finally:
        stop.set()
        watcher.join()
    assert code == 0, doc["failures"]
    after = _started(lab_inventory)
    assert all(after[n] > before[n] for n in NODES)  # both restarted onto the new revision
    # One at a time, from systemd's own clock (the lab hosts share the kernel's monotonic clock): gpu2 was
    # stopped only after gpu1 had started again on the new revision (and passed its readiness gate).
    assert _stopped(lab_inventory, "gpu2") > after["gpu1"], (after, _stopped(lab_inventory, "gpu2"))
    assert samples and not any(not any(s.values()) for s in samples), "both endpoints were down at once"
    gpu2 = host(lab_inventory, "gpu2")
    assert commit in gpu2.file("/etc/sovinfra/inference/tiny.yaml").content_string


def test_model_failing_verification_never_starts(lab_inventory: str, key: str, model_restored: Path) -> None:
    # Another commit in the store (not pinned in the inventory), published by mirror1, then rotted there.
    commit = lab_model.import_model(model_restored, 3, "broken", lambda _m: None)
    mirror, gpu1 = host(lab_inventory, "mirror1"), host(lab_inventory, "gpu1")
    assert (
        CliRunner().invoke(cli, ["apply", "mirror", "-i", lab_inventory, "--limit", "mirror1"]).exit_code == 0
    )
    blob = mirror.check_output(
        "readlink -f /var/lib/sovinfra/mirror/site/www/%s/resolve/%s/%s",
        lab_model.REPO,
        commit,
        lab_model.FILE,
    )
    mirror.check_output("printf 'X' | dd of=%s bs=1 seek=4096 conv=notrunc status=none", blob)
    bad = {"name": "bad", "port": 8001, "repo": lab_model.REPO, "revision": commit, "file": lab_model.FILE}
    try:
        code, doc = apply(lab_inventory, "--limit", "gpu1", "-e", json.dumps({"inference_services": [bad]}))
        assert code != 0
        assert any("does not match" in f["msg"] and f["host"] == "gpu1" for f in doc["failures"]), doc[
            "failures"
        ]
        assert not gpu1.file("/etc/systemd/system/sovinfra-inference-bad.service").exists
        assert not gpu1.socket("tcp://10.213.7.11:8001").is_listening
        assert gpu1.service(UNIT).is_running  # the declared service is untouched
    finally:
        code = (
            CliRunner().invoke(cli, ["apply", "mirror", "-i", lab_inventory, "--limit", "mirror1"]).exit_code
        )
    assert code == 0


def test_verify_load_passes_and_fails_on_a_tighter_slo(lab_inventory: str, key: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["verify", "load", "-i", lab_inventory, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] and [(e["host"], e["service"]) for e in doc["endpoints"]] == [
        ("gpu1", "tiny"),
        ("gpu2", "tiny"),
        ("mirror1", "site:tiny"),  # the site endpoint, by default
    ]
    tight = tmp_path / "inventory"
    shutil.copytree(lab_inventory, tight)
    with (tight / "group_vars" / "inference.yml").open("a") as fh:
        fh.write(yaml.safe_dump({"inference_slo_ttft_ms": 0.5}))
    vault = ["--vault-password-file", str(lab_model.vault_password_file())]
    result = CliRunner().invoke(cli, ["verify", "load", "-i", str(tight), "--json", *vault])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert not doc["ok"] and all(not e["passed"] for e in doc["endpoints"])
    assert all(any("ttft" in r.lower() for r in e["reasons"]) for e in doc["endpoints"]), doc


def test_vllm_on_an_8_gpu_node_in_check_mode(lab_inventory: str, key: str) -> None:
    commit = host(lab_inventory, "gpu1").check_output(
        "grep -o 'snapshots/[0-9a-f]*' /etc/sovinfra/inference/tiny.yaml"
    )
    big = {
        "name": "big",
        "engine": "vllm",
        "port": 8100,
        "repo": lab_model.REPO,
        "revision": commit.split("/")[1],
    }
    result = CliRunner().invoke(
        cli,
        ["apply", "inference", "-i", lab_inventory, "--limit", "gpu1", "--check", "--diff", "--json",
         "-e", json.dumps({"inference_services": [big]})],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    would = {c["task"] for c in doc["changes"]}
    assert any("unit" in t for t in would) and any("venv" in t for t in would), would
    gpu1 = host(lab_inventory, "gpu1")
    assert not gpu1.file(
        "/etc/systemd/system/sovinfra-inference-big.service"
    ).exists  # check mode wrote nothing
    assert not gpu1.file("/opt/sovinfra/engines/vllm-0.11.0").exists
    # The same service from an image (by digest): a unit, no engine venv; nothing written either.
    image = {**big, "name": "big-image", "image": "docker.io/vllm/vllm-openai@sha256:" + "e" * 64}
    result = CliRunner().invoke(
        cli,
        ["apply", "inference", "-i", lab_inventory, "--limit", "gpu1", "--check", "--json",
         "-e", json.dumps({"inference_services": [image]})],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    changes = json.loads(result.stdout)["changes"]
    would = {c["task"] for c in changes}
    assert any("unit" in t for t in would) and not any("Install each engine release" in t for t in would), (
        would
    )
    # ...and the llama.cpp venv no service would run any more is listed to go, and still there.
    (prune,) = [c for c in changes if "Remove engine venvs and cached models" in c["task"]]
    assert "/opt/sovinfra/engines/llama_cpp-" in prune["msg"], prune
    assert not gpu1.file("/etc/systemd/system/sovinfra-inference-big-image.service").exists
    assert gpu1.file(prune["msg"].removeprefix("changed: ").split(", ")[0]).is_directory


def test_a_service_no_longer_declared_is_stopped_and_removed(lab_inventory: str, key: str) -> None:
    """...and with it the engine venv and cached model no declaration uses any more (the declared service's
    venv and model stay)."""
    gpu1 = host(lab_inventory, "gpu1")
    # A service an earlier converge installed and the inventory no longer declares, its venv and its model.
    old = "sovinfra-inference-old"
    unit = "[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n"
    venv, model = "/opt/sovinfra/engines/llama_cpp-0.0.1", "/var/lib/sovinfra/hf-cache/models--old--gone"
    files = (
        f"/etc/systemd/system/{old}.service",
        "/etc/sovinfra/inference/old.yaml",
        "/etc/sovinfra/inference/old.env",
        venv,
        model,
    )
    snapshot = f"{model}/snapshots/{'0' * 40}"
    make = (
        f"printf '{unit}' > {files[0]} && touch {files[1]} {files[2]} && mkdir -p {venv}/bin {model}/blobs "
        f"{snapshot} && echo w > {model}/blobs/e1 && ln -s ../../blobs/e1 {snapshot}/model.gguf && "
        "systemctl daemon-reload"
    )
    # What the lab's service declares: its engine venv and its model's folder.
    declared = "/var/lib/sovinfra/hf-cache/models--" + lab_model.REPO.replace("/", "--")
    kept = gpu1.check_output(f"ls -d /opt/sovinfra/engines/*/ {declared}")
    gpu1.check_output(f"{make} && systemctl enable --now {old}")
    since = gpu1.check_output(f"systemctl show -p ActiveEnterTimestamp {UNIT}")
    try:
        code, planned = apply(lab_inventory, "--limit", "gpu1", "--check")
        assert code == 0, planned["failures"]
        would = {c["task"] for c in planned["changes"] if c["host"] == "gpu1"}
        for task in ("Stop and disable services no longer declared", "Remove their units, settings"):
            assert any(task in t for t in would), would
        (listed,) = [
            c["msg"] for c in planned["changes"] if "Remove engine venvs and cached models" in c["task"]
        ]
        gone = listed.removeprefix("changed: ").split(", ")
        # The dry run names what would go: the planted venv and model (and any revision of the lab model a
        # test left), never the declared venv or the declared model's folder.
        assert {venv, model} <= set(gone) and not set(gone) & {k.rstrip("/") for k in kept.split()}, gone
        assert gpu1.service(old).is_running and all(
            gpu1.file(f).exists for f in files
        )  # check mode: untouched
        code, done = apply(lab_inventory, "--limit", "gpu1")
        assert code == 0, done["failures"]
        assert not gpu1.service(old).is_running and not any(gpu1.file(f).exists for f in files)
        assert gpu1.check_output(f"ls -d {kept.replace(chr(10), ' ')}") == kept  # declared: kept
        assert (
            gpu1.check_output(f"systemctl show -p ActiveEnterTimestamp {UNIT}") == since
        )  # the declared one ran on
        code, again = apply(lab_inventory, "--limit", "gpu1")
        assert code == 0 and again["hosts"]["gpu1"]["changed"] == 0
    finally:
        gpu1.run(f"systemctl disable --now {old}; rm -rf {' '.join(files)}; systemctl daemon-reload")


def test_tampered_model_fails_its_start_and_a_converge_repairs_it(lab_inventory: str, key: str) -> None:
    gpu1 = host(lab_inventory, "gpu1")
    snapshot = gpu1.check_output("grep -o '/var/lib/sovinfra/hf-cache/[^ ]*/snapshots/[0-9a-f]*' %s", CONFIG)
    blob = gpu1.check_output("readlink -f %s/%s", snapshot, lab_model.FILE)
    good = gpu1.check_output("sha256sum %s", blob).split()[0]
    gpu1.check_output("printf 'X' | dd of=%s bs=1 seek=4096 conv=notrunc status=none", blob)
    started = gpu1.run(f"systemctl restart {UNIT}")
    assert started.rc != 0  # the engine never opened the tampered file
    log = gpu1.check_output(f"journalctl -u {UNIT} -n 50 --no-pager")
    assert f"{lab_model.FILE}: sha256" in log and "does not match" in log, log
    assert not gpu1.socket("tcp://10.213.7.11:8000").is_listening
    code, doc = apply(lab_inventory, "--limit", "gpu1")
    assert code == 0, doc["failures"]
    tasks = {c["task"] for c in doc["changes"] if c["host"] == "gpu1"}
    assert any("Pull" in t for t in tasks) and any("Start" in t for t in tasks), tasks
    assert gpu1.check_output("sha256sum %s", blob).split()[0] == good
    assert get("http://10.213.7.11:8000/v1/models", key)[0] == 200
    code, again = apply(lab_inventory, "--limit", "gpu1")
    assert code == 0 and again["changes"] == [], again["changes"]
