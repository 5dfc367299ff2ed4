"""GPU containers from the site registry on the air-gapped lab: an image made here, added to the store by
digest, pushed by the mirror's converge, pulled by a GPU node under its unchanged upstream name, run with
the NVIDIA runtime and a CDI device; removed again, it fails by name and nothing goes upstream."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import testinfra
import yaml
from click.testing import CliRunner

from sovinfra.cli import cli
from sovinfra.lab import base, image, manager

pytestmark = pytest.mark.lab
NAME = "docker.io/sovinfra/lab-gpu-base"
NAMESPACE = "sovinfra-test"
RUNTIME = "/usr/bin/nvidia-container-runtime"


def apply(inventory: str, *args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(cli, ["apply", "-i", inventory, "--json", *args])
    assert result.stdout, result.output
    return result.exit_code, json.loads(result.stdout)


def host(inventory: str, name: str) -> testinfra.host.Host:
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=f"{inventory}/hosts.yml")


def ctr(node: testinfra.host.Host, *args: str) -> Any:
    return node.run(" ".join(["ctr", "-n", NAMESPACE, *map(shlex.quote, args)]))


def gpu_run(node: testinfra.host.Host, reference: str, device: str, *command: str) -> Any:
    """Run with NVIDIA's runtime asking for a CDI device (its CDI mode reads NVIDIA_VISIBLE_DEVICES)."""
    env = f"NVIDIA_VISIBLE_DEVICES={device}"
    return ctr(node, "run", "--rm", "--runc-binary", RUNTIME, "--env", env, reference, "gpu-probe", *command)


@pytest.fixture(scope="module")
def reference(
    lab: object, lab_inventory: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[str]:
    """The lab image in the store, pushed by a converge of the mirror (the session's own, when this module
    runs first, or one of its own: the tests do not depend on file order), and its reference by digest;
    removed again at the end."""
    archive = tmp_path_factory.mktemp("image") / "lab-gpu-base.tar"
    digest = image.build_archive(base.base_dir(), archive, "bookworm")
    added = CliRunner().invoke(
        cli, ["mirror", "images", "add", str(archive), "--name", f"{NAME}:bookworm", "--json"]
    )
    assert added.exit_code == 0, added.output
    assert [i["digest"] for i in json.loads(added.stdout)] == [digest]
    request.getfixturevalue("converged")
    code, pushed = apply(lab_inventory, "mirror", "--limit", "model_mirror")
    assert code == 0, pushed["failures"]
    try:
        yield f"{NAME}@{digest}"
    finally:
        CliRunner().invoke(cli, ["mirror", "images", "rm", NAME])
        apply(lab_inventory, "mirror", "--limit", "model_mirror")
        for name in ("gpu1", "gpu2"):
            node = host(lab_inventory, name)
            for kind in ("containers", "images"):
                listed = ctr(node, kind, "ls", "-q").stdout.split()
                if listed:
                    ctr(node, kind, "rm", *listed)


def test_the_mirror_converge_pushed_it_and_changes_nothing_again(lab_inventory: str, reference: str) -> None:
    code, again = apply(lab_inventory, "mirror", "--limit", "model_mirror")
    assert code == 0 and again["hosts"]["mirror1"]["changed"] == 0, again["changes"]
    code, again = apply(lab_inventory, "gpu_nodes", "--tags", "container_runtime,nvidia_container_toolkit")
    assert code == 0 and {h: r["changed"] for h, r in again["hosts"].items()} == {"gpu1": 0, "gpu2": 0}
    mirror = host(lab_inventory, "mirror1")
    # In the registry by digest, byte for byte; the registry itself only on loopback.
    name, digest = reference.split("@")
    accept = "Accept: application/vnd.oci.image.manifest.v1+json"
    url = f"http://127.0.0.1:5001/v2/{name}/manifests/{digest}"
    served = mirror.check_output(f"curl -fsS -H '{accept}' {url} | sha256sum")
    assert "sha256:" + served.split()[0] == digest
    listening = mirror.check_output("ss -Hltn")
    assert "127.0.0.1:5001 " in listening and "*:5001 " not in listening and "0.0.0.0:5001" not in listening


def test_a_gpu_node_pulls_it_by_digest_and_its_container_sees_the_gpus(
    lab_inventory: str, reference: str
) -> None:
    egress = manager.egress_packets()
    for name in ("gpu1", "gpu2"):
        node = host(lab_inventory, name)
        # The upstream name, unchanged: containerd's hosts.toml sends docker.io to the site registry.
        pulled = ctr(node, "images", "pull", "--hosts-dir", "/etc/containerd/certs.d", reference)
        assert pulled.rc == 0, pulled.stderr
        query = ["nvidia-smi", "--query-gpu=index,uuid,serial", "--format=csv,noheader"]
        outside = node.check_output(shlex.join(query)).splitlines()
        profile = yaml.safe_load(node.check_output("cat /etc/sovinfra/nvml-profile.yml"))
        assert [line.split(", ")[2] for line in outside] == [g["serial"] for g in profile["gpus"]]
        run = gpu_run(node, reference, "nvidia.com/gpu=all", *query)
        assert run.rc == 0, run.stderr
        assert run.stdout.splitlines() == outside  # every GPU, by UUID and serial
        # Without a CDI device the container has no GPU tools: the spec put them there.
        bare = ctr(node, "run", "--rm", reference, "bare-probe", "nvidia-smi", "-L")
        assert bare.rc != 0 and "nvidia-smi" in bare.stderr and "not found" in bare.stderr
        unknown = gpu_run(node, reference, "nvidia.com/gpu=99", "true")
        assert unknown.rc != 0 and "unresolvable CDI devices nvidia.com/gpu=99" in unknown.stderr
    assert manager.egress_packets() == egress == 0


def test_the_registry_is_read_only_from_the_site(lab_inventory: str, reference: str) -> None:
    node = host(lab_inventory, "gpu1")
    name, digest = reference.split("@")
    site = f"http://{manager.state.load().hosts['mirror1'].address}:5000"

    def status(method: str, path: str) -> str:
        # distribution serves an OCI manifest only to a client that accepts the type.
        accept = "-H 'Accept: application/vnd.oci.image.manifest.v1+json'"
        head = "--head" if method == "HEAD" else f"-X {method}"
        return node.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' {accept} {head} {site}{path}")

    assert status("GET", f"/v2/{name}/manifests/{digest}") == "200"
    assert status("HEAD", f"/v2/{name}/manifests/{digest}") == "200"
    assert status("DELETE", f"/v2/{name}/manifests/{digest}") == "403"
    assert status("POST", f"/v2/{name}/blobs/uploads/") == "403"
    assert status("PUT", f"/v2/{name}/manifests/latest") == "403"


def test_an_image_removed_from_the_site_fails_by_name(lab_inventory: str, reference: str) -> None:
    removed = CliRunner().invoke(cli, ["mirror", "images", "rm", reference])
    assert removed.exit_code == 0 and f"removed {reference}" in removed.output
    # Check mode says the registry would change, and changes nothing.
    code, planned = apply(lab_inventory, "mirror", "--limit", "model_mirror", "--check")
    assert code == 0 and planned["hosts"]["mirror1"]["changed"] > 0
    mirror = host(lab_inventory, "mirror1")
    name, digest = reference.split("@")
    still = f"curl -fsS -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' http://127.0.0.1:5001/v2/{name}/manifests/{digest}"
    assert mirror.run(still).rc == 0
    code, result = apply(lab_inventory, "mirror", "--limit", "model_mirror")
    assert code == 0 and result["hosts"]["mirror1"]["changed"] > 0
    egress = manager.egress_packets()
    node = host(lab_inventory, "gpu1")
    ctr(node, "images", "rm", reference)
    pulled = ctr(node, "images", "pull", "--hosts-dir", "/etc/containerd/certs.d", reference)
    assert pulled.rc != 0 and f"{reference}: not found" in pulled.stderr
    assert manager.egress_packets() == egress == 0
    # The registry garbage-collected its blobs: nothing of the image is left on the mirror host's disk.
    blob = reference.split("@")[1].removeprefix("sha256:")
    left = mirror.check_output(
        f"find /var/lib/docker-registry -path '*/blobs/sha256/{blob[:2]}/{blob}' -print"
    )
    assert left == ""


def test_lab_base_image_is_reproducible(tmp_path: Path, reference: str) -> None:
    again = image.build_archive(base.base_dir(), tmp_path / "again.tar", "bookworm")
    assert again == reference.split("@")[1]
