"""What a node's container runtime is told about registries: every listed upstream resolves to the site
registry under its own name, with nothing to fall back to (rendered by Ansible's templar from the roles'
defaults, as a host gets them)."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
import yaml

from tests.conftest import trusted
from tests.unit.test_os_render import FACTS, ROLES, templar

SITE = "10.0.0.1:5000"  # templar's first model_mirror host, at the site's registry port


def render(template: str, **extra: Any) -> str:
    text = (ROLES / "container_runtime" / "templates" / template).read_text()
    facts = next(iter(FACTS.values()))
    return str(templar(facts, {"ansible_managed": "managed", **extra}).template(trusted(text)))


def test_the_site_registry_follows_the_first_mirror_host() -> None:
    facts = next(iter(FACTS.values()))
    assert templar(facts).template(trusted("{{ site_registry }}")) == SITE
    empty = {"groups": {"all": ["gpu1"], "gpu_nodes": ["gpu1"]}}
    assert templar(facts, empty).template(trusted("{{ site_registry }}")) == ""


@pytest.mark.parametrize("upstream", ["docker.io", "nvcr.io", "ghcr.io", "registry.example:8443"])
def test_containerd_sends_an_upstream_to_the_site_only(upstream: str) -> None:
    hosts = tomllib.loads(render("containerd-hosts.toml.j2", __upstream=upstream))
    site = f"http://{SITE}/v2/{upstream}"
    # `server` is the fallback containerd tries after the hosts: the site again, never the upstream.
    assert hosts["server"] == site and hosts["override_path"] is True
    assert hosts["host"] == {site: {"capabilities": ["pull", "resolve"], "override_path": True}}
    assert upstream not in hosts["server"].split("/v2/")[0]


def test_containerd_reaches_the_site_registry_itself_over_plain_http() -> None:
    hosts = tomllib.loads(render("containerd-hosts.toml.j2", __upstream=SITE))
    assert hosts["server"] == f"http://{SITE}" and "override_path" not in hosts
    assert hosts["host"] == {f"http://{SITE}": {"capabilities": ["pull", "resolve"]}}


def test_containerd_cri_reads_the_hosts_directory() -> None:
    dropin = tomllib.loads(render("containerd-registry.toml.j2"))
    assert (
        dropin["plugins"]["io.containerd.grpc.v1.cri"]["registry"]["config_path"] == "/etc/containerd/certs.d"
    )
    config = tomllib.loads(render("containerd-config.toml.j2"))
    assert config["imports"] == ["/etc/containerd/conf.d/*.toml"]


def test_podman_replaces_each_upstream_with_the_site() -> None:
    mirrors = ["docker.io", "nvcr.io"]
    conf = tomllib.loads(render("podman-registries.conf.j2", container_runtime_registry_mirrors=mirrors))
    entries = {r.get("prefix", r["location"]): r for r in conf["registry"]}
    for upstream in mirrors:
        # `location` replaces the registry: podman has no upstream left to fall back to.
        assert entries[upstream] == {"prefix": upstream, "location": f"{SITE}/{upstream}", "insecure": True}
    assert entries[SITE] == {"location": SITE, "insecure": True}
    assert len(entries) == len(mirrors) + 1  # plain HTTP for the site registry only


def test_the_default_upstream_list_covers_the_gpu_registries() -> None:
    defaults = yaml.safe_load((ROLES / "container_runtime" / "defaults" / "main.yml").read_text())
    assert {"docker.io", "nvcr.io", "ghcr.io"} <= set(defaults["container_runtime_registry_mirrors"])
