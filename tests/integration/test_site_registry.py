"""`sovinfra mirror images push` against a real registry (Debian's docker-registry on loopback): pushed by
digest and verified, a dry run that changes nothing, a second run with nothing to do, removed images
deleted, and a push that cannot complete names the image and leaves nothing that references it."""

from __future__ import annotations

import hashlib
import queue
import re
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from sovinfra.errors import UserError
from sovinfra.mirror import images
from tests.conftest import missing
from tests.unit.test_images import archive

ACCEPT = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    if not shutil.which("docker-registry"):
        missing("docker-registry is not installed (scripts/setup installs it)")
    config = tmp_path / "registry.yml"
    storage = {"filesystem": {"rootdirectory": str(tmp_path / "data")}, "delete": {"enabled": True}}
    # Port 0: the registry binds a port of its own choosing and says which; none is picked for it.
    doc = {"version": 0.1, "log": {"level": "info"}, "storage": storage, "http": {"addr": "127.0.0.1:0"}}
    config.write_text(yaml.safe_dump(doc))
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    said: queue.Queue[str] = queue.Queue()

    def watch_log() -> None:  # drains the log (a full pipe would block it) and passes on the address
        for line in proc.stderr:  # type: ignore[union-attr]
            found = re.search(r'msg="listening on (127\.0\.0\.1:\d+)"', line)
            if found:
                said.put(found.group(1))
        said.put("")

    threading.Thread(target=watch_log, daemon=True).start()
    try:
        try:
            address = said.get(timeout=10)
        except queue.Empty:
            pytest.fail("docker-registry did not say where it listens within 10 s")
        if not address:
            pytest.fail(f"docker-registry exited ({proc.wait(timeout=10)}) before it listened")
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def manifest_digest(registry: str, reference: str) -> str:
    name, digest = reference.split("@")
    req = urllib.request.Request(
        f"http://{registry}/v2/{name}/manifests/{digest}", headers={"Accept": ACCEPT}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return "sha256:" + hashlib.sha256(resp.read()).hexdigest()


def test_push_keeps_digests_and_the_registry_follows_the_store(registry: str, tmp_path: Path) -> None:
    store = tmp_path / "store"
    one, d1 = archive(tmp_path, "one", b"1")
    two, d2 = archive(tmp_path, "two", b"2")
    a = images.add(store, str(one), "nvcr.io/site/one:v1", lambda _m: None)
    b = images.add(store, str(two), "docker.io/site/two", lambda _m: None)  # untagged: a tag from its digest
    planned = images.sync_registry(store, registry, lambda _m: None, dry_run=True)
    assert sorted(planned["pushed"]) == sorted([a.reference, b.reference]) and planned["removed"] == []
    assert not images.in_registry(registry, a)  # the dry run changed nothing
    assert images.sync_registry(store, registry, lambda _m: None)["pushed"] == planned["pushed"]
    assert manifest_digest(registry, a.reference) == d1 and manifest_digest(registry, b.reference) == d2
    # skopeo, another client, reads it back by digest under the same name.
    inspect = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{registry}/{a.reference}"],
                             capture_output=True, check=True)  # fmt: skip
    assert "sha256:" + hashlib.sha256(inspect.stdout).hexdigest() == d1
    assert images.sync_registry(store, registry, lambda _m: None) == {"pushed": [], "removed": []}
    images.remove(store, "nvcr.io/site/one")
    assert images.sync_registry(store, registry, lambda _m: None, dry_run=True) == {
        "pushed": [],
        "removed": [a.reference],
    }
    assert images.in_registry(registry, a)
    assert images.sync_registry(store, registry, lambda _m: None)["removed"] == [a.reference]
    assert not images.in_registry(registry, a) and images.in_registry(registry, b)


def test_a_missing_blob_names_the_image_and_no_manifest_is_pushed(registry: str, tmp_path: Path) -> None:
    store = tmp_path / "store"
    path, digest = archive(tmp_path, "app", b"1")
    image = images.add(store, str(path), "docker.io/site/app:v1", lambda _m: None)
    layer = next(
        p for p in (store / "images" / "blobs" / "sha256").iterdir() if p.read_bytes()[:2] == b"\x1f\x8b"
    )
    layer.unlink()
    with pytest.raises(UserError, match=rf"docker.io/site/app@{digest}: blob sha256:{layer.name} is missing"):
        images.sync_registry(store, registry, lambda _m: None)
    assert not images.in_registry(registry, image)
