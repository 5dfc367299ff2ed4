"""The mirror on the lab: the mirror host serves, GPU nodes pull and verify, re-runs change nothing."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import testinfra
import yaml
from click.testing import CliRunner

from sovinfra.cli import cli
from sovinfra.mirror import importer, wheels
from sovinfra.mirror.store import Store
from tests.tiny_model import make_tiny_model

pytestmark = pytest.mark.lab
REPO = "sovinfra/tiny"
# nginx's combined log format: client, then the request line.
REQUEST = re.compile(r'^(?P<client>\S+) .*?"(?:GET|HEAD) (?P<path>\S+) HTTP/1\.[01]"', re.MULTILINE)


@pytest.fixture(scope="module")
def inventory(lab_inventory: str, converged: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A copy of the lab's inventory for this module's settings (the lab's own is never written); after
    the module, mirror1 and the caches are converged back to the lab's own inventory."""
    copy = tmp_path_factory.mktemp("inventory") / "lab"
    shutil.copytree(lab_inventory, copy)
    yield str(copy)
    code, doc = apply(lab_inventory)
    assert code == 0, doc["failures"]


@pytest.fixture(scope="module")
def pinned(inventory: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny model in a test store, published by mirror1 and pinned on the GPU nodes (converged)."""
    store = Store(tmp_path_factory.mktemp("control-store"))
    store.root.chmod(0o755)
    commit = importer.import_folder(
        store, make_tiny_model(tmp_path_factory.mktemp("m") / "tiny"), REPO, "main", False, lambda _m: None
    )
    wheels.add(store.root, [str(probe_wheel(tmp_path_factory.mktemp("probe")))], lambda _m: None)
    group_vars = Path(inventory) / "group_vars"
    (group_vars / "model_mirror.yml").write_text(
        yaml.safe_dump({"model_mirror_source_store": str(store.root)})
    )
    cached = {"model_cache_models": [{"repo": REPO, "revision": commit}]}
    (group_vars / "gpu_nodes.yml").write_text(yaml.safe_dump(cached))
    code, first = apply(inventory)
    assert code == 0, first["failures"]
    return commit


def probe_wheel(folder: Path) -> Path:
    """A one-module wheel, built here without any index."""
    source, out = folder / "src", folder / "out"
    (source / "sovinfra_probe").mkdir(parents=True)
    (source / "sovinfra_probe" / "__init__.py").write_text("ANSWER = 42\n")
    (source / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "sovinfra-probe"\nversion = "1.0"\n'
    )
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-index", "--no-build-isolation", "-w", str(out)]
    subprocess.run([*cmd, str(source)], check=True, capture_output=True)
    return next(out.glob("*.whl"))


def apply(inventory: str, *args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(cli, ["apply", "mirror", "-i", inventory, "--json", *args])
    return result.exit_code, json.loads(result.stdout)


def host(inventory: str, name: str) -> testinfra.host.Host:
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=f"{inventory}/hosts.yml")


def test_mirror_serves_and_nodes_pull_verified(lab_inventory: str, inventory: str, pinned: str) -> None:
    gpu1 = host(lab_inventory, "gpu1")
    info = json.loads(gpu1.check_output("curl -sf http://10.213.7.10/api/models/%s/revision/main", REPO))
    assert info["sha"] == pinned
    cache = "/var/lib/sovinfra/hf-cache/models--sovinfra--tiny"
    assert gpu1.file(f"{cache}/.sovinfra/ready-{pinned}").exists
    assert gpu1.file(f"{cache}/snapshots/{pinned}/config.json").is_symlink
    env = gpu1.file("/etc/default/sovinfra-models").content_string
    assert (
        "HF_HUB_OFFLINE=1" in env
        and "HF_HUB_DISABLE_XET=1" in env
        and "HF_ENDPOINT=http://10.213.7.10" in env
    )
    mirror = host(lab_inventory, "mirror1")
    assert mirror.socket("tcp://10.213.7.10:80").is_listening
    assert not mirror.socket("tcp://0.0.0.0:80").is_listening  # nothing wider than it must

    code, second = apply(inventory)
    assert code == 0 and second["changes"] == []
    code, checked = apply(inventory, "--check")
    assert code == 0 and checked["changes"] == []


def test_nodes_install_wheels_from_the_mirror_only(lab_inventory: str, pinned: str) -> None:
    gpu1 = host(lab_inventory, "gpu1")
    gpu1.check_output("rm -rf /tmp/probe && python3 -m venv /tmp/probe")
    # The lab has no route out: this can only succeed from mirror1's wheelhouse.
    index = "http://10.213.7.10/simple/"
    # Plain HTTP on the site network: pip needs --trusted-host; integrity comes from the #sha256 links.
    pip = f"/tmp/probe/bin/pip install -q --no-cache-dir --index-url {index} --trusted-host 10.213.7.10"
    gpu1.check_output(f"{pip} sovinfra-probe==1.0")
    assert gpu1.check_output("/tmp/probe/bin/python -c 'import sovinfra_probe as p; print(p.ANSWER)'") == "42"


def test_corrupt_mirror_blob_is_caught_on_the_node(lab_inventory: str, inventory: str, pinned: str) -> None:
    mirror, gpu2 = host(lab_inventory, "mirror1"), host(lab_inventory, "gpu2")
    blob_path = mirror.check_output(
        "readlink -f /var/lib/sovinfra/mirror/site/www/%s/resolve/%s/tiny.Q8_0.gguf", REPO, pinned
    )
    original = mirror.check_output("base64 -w0 %s", blob_path)
    mirror.check_output("printf 'X' | dd of=%s bs=1 seek=100 conv=notrunc status=none", blob_path)
    gpu2.check_output("rm -rf /var/lib/sovinfra/hf-cache/models--sovinfra--tiny")
    try:
        # Only the node: a converge of mirror1 would restore the blob from the control store.
        code, doc = apply(inventory, "--limit", "gpu2")
        assert code != 0
        assert any("does not match" in f["msg"] and f["host"] == "gpu2" for f in doc["failures"])
        assert not gpu2.file(
            f"/var/lib/sovinfra/hf-cache/models--sovinfra--tiny/.sovinfra/ready-{pinned}"
        ).exists
    finally:
        mirror.check_output("echo %s | base64 -d > %s", original, blob_path)
    code, doc = apply(inventory, "--limit", "gpu2,mirror1")
    assert code == 0, doc["failures"]


def test_nodes_behind_a_rack_cache_take_each_file_from_the_mirror_once(
    lab_inventory: str, inventory: str, pinned: str
) -> None:
    """gpu1 made the rack cache of both nodes: their pulls of one commit, at once, cost the mirror one
    transfer per file (its access log), the cache two (one per node)."""
    mirror, gpu1, gpu2 = (host(lab_inventory, n) for n in ("mirror1", "gpu1", "gpu2"))
    model = "/var/lib/sovinfra/hf-cache/models--sovinfra--tiny"
    installed = "dpkg-query -W -f='${binary:Package}\\n'"
    before = set(gpu1.check_output(installed).split())
    hosts_file, nodes_vars = Path(inventory) / "hosts.yml", Path(inventory) / "group_vars" / "gpu_nodes.yml"
    saved = {p: p.read_text() for p in (hosts_file, nodes_vars)}
    doc = yaml.safe_load(saved[hosts_file])
    doc["all"]["children"]["mirror_cache"] = {"hosts": {"gpu1": {"ansible_host": "10.213.7.11"}}}
    hosts_file.write_text(yaml.safe_dump(doc))
    nodes_vars.write_text(yaml.safe_dump({**yaml.safe_load(saved[nodes_vars]), "model_cache_via": "gpu1"}))
    try:
        for node in (gpu1, gpu2):
            node.check_output(f"rm -rf {model}")
        offset = int(mirror.check_output("stat -c %s /var/log/nginx/access.log"))
        code, doc = apply(inventory)
        assert code == 0, doc["failures"]
        for node in (gpu1, gpu2):
            assert node.file(f"{model}/.sovinfra/ready-{pinned}").exists
        origin = mirror.check_output(f"tail -c +{offset + 1} /var/log/nginx/access.log")
        files = json.loads(
            mirror.check_output(f"curl -sf http://10.213.7.10/api/models/{REPO}/revision/{pinned}")
        )["siblings"]
        resolve = {f"/{REPO}/resolve/{pinned}/{urllib.parse.quote(f['rfilename'])}" for f in files}
        served = Counter(m["path"] for m in REQUEST.finditer(origin))
        assert {p: served[p] for p in resolve} == dict.fromkeys(resolve, 1)
        at_cache = Counter(
            (m["client"], m["path"])
            for m in REQUEST.finditer(gpu1.check_output("cat /var/log/nginx/access.log"))
        )
        assert at_cache == {(ip, p): 1 for ip in ("10.213.7.11", "10.213.7.12") for p in resolve}
        assert gpu1.socket("tcp://10.213.7.11:8080").is_listening
        assert not gpu1.socket("tcp://0.0.0.0:8080").is_listening
        code, again = apply(inventory)
        assert code == 0 and again["changes"] == []
    finally:
        for path, text in saved.items():
            path.write_text(text)
        added = set(gpu1.check_output(installed).split()) - before
        gpu1.check_output(f"apt-get purge -y -q {' '.join(sorted(added))}" if added else "true")
        gpu1.check_output("rm -rf /var/cache/sovinfra /var/log/nginx")
