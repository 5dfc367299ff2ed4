"""`sovinfra audit`'s judge on recorded host files: a sovereign host, and one that depends on the world."""

from __future__ import annotations

from sovinfra import audit
from sovinfra.fleet import sources

SITE = audit.scope(
    {"mirror1": {"ansible_host": "10.0.0.10"}, "gpu1": {"ansible_host": "10.0.0.11"}}, ["10.0.9.0/24"]
)

GOOD = {
    "/etc/apt/sources.list.d/sovinfra-site.sources": (
        "# managed\nTypes: deb\nURIs: http://10.0.0.10/packages/site\nSuites: 20261202T101832Z\n"
        "Components: main\nSigned-By: /etc/apt/keyrings/sovinfra-site.gpg\nCheck-Valid-Until: no\n"
    ),
    "/etc/apt/sources.list.d/sovinfra-nvidia-cuda.list": (
        "deb [signed-by=/etc/apt/keyrings/nvidia-cuda.gpg] http://mirror1/packages/cuda/repos/debian12/x86_64"
        " /\n"
    ),
    "/etc/apt/apt.conf.d/70debconf": 'DPkg::Pre-Install-Pkgs {"/usr/sbin/dpkg-preconfigure --apt";};\n',
    "/etc/pip.conf": "[global]\nindex-url = http://10.0.0.10/simple/\ntrusted-host = 10.0.0.10\n",
    "/etc/default/sovinfra-models": "HF_ENDPOINT=http://10.0.0.10\nHF_HUB_OFFLINE=1\n",
    "/etc/systemd/timesyncd.conf": "[Time]\n#NTP=\n",
    "/etc/systemd/timesyncd.conf.d/sovinfra.conf": "[Time]\nNTP=10.0.9.1\n",
    "/etc/containerd/certs.d/docker.io/hosts.toml": 'server = "https://10.0.0.10:5000"\n',
}

BAD = {
    "/etc/apt/sources.list": (
        "deb http://deb.debian.org/debian bookworm main\n"
        "# deb http://commented.example/debian bookworm main\n"
        "deb [trusted=yes] http://10.0.0.10/local ./\n"
    ),
    "/etc/apt/sources.list.d/debian.sources": (
        "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb\nURIs: http://disabled.example/debian\nEnabled: no\n"
    ),
    "/etc/apt/apt.conf.d/01proxy": (
        'Acquire::http::Proxy "http://proxy.corp.example:3128";\nAcquire::http::Proxy::10.0.0.10 "DIRECT";\n'
    ),
    "/etc/environment": 'https_proxy="http://proxy.corp.example:3128"\n',
    "/etc/pip.conf": "[global]\nindex-url = https://pypi.org/simple\nextra-index-url = http://10.0.0.10/simple/\n",
    "/etc/default/sovinfra-models": "HF_HUB_OFFLINE=1\n",
    "/etc/docker/daemon.json": (
        '{"registry-mirrors": ["https://mirror.gcr.io"], "insecure-registries": ["10.0.0.10:5000"]}'
    ),
    "/etc/containerd/certs.d/docker.io/hosts.toml": (
        'server = "https://registry-1.docker.io"\n[host."https://10.0.0.10:5000"]\n  skip_verify = true\n'
    ),
    "/etc/systemd/timesyncd.conf": "[Time]\n#NTP=\n",
}


def findings(files: dict[str, str]) -> list[audit.Finding]:
    found, trust = audit.host_sources("gpu1", files)
    return trust + audit.judge(found, SITE)


def test_a_sovereign_host_has_sources_and_no_findings() -> None:
    found, _ = audit.host_sources("gpu1", GOOD)
    kinds = {s.kind for s in found}
    assert kinds == {"apt", "pip", "hf", "ntp", "registry"}
    assert ("ntp", "10.0.9.1") in {(s.kind, s.value) for s in found}
    assert findings(GOOD) == []


def test_every_outside_dependency_and_weak_trust_is_named() -> None:
    got = {(f.file, f.value, f.problem.split(":")[0]) for f in findings(BAD)}
    assert got == {
        ("/etc/apt/sources.list", "http://deb.debian.org/debian", "no signed-by"),
        ("/etc/apt/sources.list", "http://deb.debian.org/debian", "outside the site"),
        ("/etc/apt/sources.list", "http://10.0.0.10/local", "trusted=yes"),
        (
            "/etc/apt/sources.list.d/debian.sources",
            "http://deb.debian.org/debian-security",
            "outside the site",
        ),
        ("/etc/apt/apt.conf.d/01proxy", "http://proxy.corp.example:3128", "outside the site"),
        ("/etc/environment", "http://proxy.corp.example:3128", "outside the site"),
        ("/etc/pip.conf", "https://pypi.org/simple", "outside the site"),
        ("/etc/default/sovinfra-models", "https://huggingface.co (no HF_ENDPOINT)", "outside the site"),
        ("/etc/docker/daemon.json", "https://mirror.gcr.io", "outside the site"),
        ("/etc/docker/daemon.json", "10.0.0.10:5000", "insecure registry"),
        ("/etc/containerd/certs.d/docker.io/hosts.toml", "https://registry-1.docker.io", "outside the site"),
        (
            "/etc/containerd/certs.d/docker.io/hosts.toml",
            "https://registry-1.docker.io, https://10.0.0.10:5000",
            "skip_verify",
        ),
        ("/etc/systemd/timesyncd.conf", "the distribution's pool (no NTP=)", "outside the site"),
    }


def test_scope_knows_names_addresses_networks_and_local_paths() -> None:
    assert SITE.inside("http://mirror1/packages") and SITE.inside("http://10.0.0.11:8000/x")
    assert SITE.inside("10.0.9.7") and SITE.inside("file:/srv/sovinfra/packages/site")
    assert not SITE.inside("http://10.0.1.1/") and not SITE.inside("https://deb.debian.org/debian")


def test_moving_model_references_are_flagged() -> None:
    pinned = {"repo": "org/m", "revision": "a" * 40}
    got = audit.mutable_references(
        "gpu1",
        {
            "inference_services": [pinned, {"repo": "org/m", "revision": "main"}],
            "model_cache_models": [{"repo": "o/x"}],
        },
        "inventory/site",
    )
    assert [f.value for f in got] == ["inference_services[1] org/m@main", "model_cache_models[0] o/x@main"]


def test_the_host_read_splits_back_into_files() -> None:
    lines = [
        f"{sources.MARK}/etc/pip.conf",
        "[global]",
        "index-url = x",
        "",
        f"{sources.MARK}/etc/environment",
        "A=1",
    ]
    assert sources.split_files(lines) == {
        "/etc/pip.conf": "[global]\nindex-url = x\n",
        "/etc/environment": "A=1",
    }


def _render_site_source(host: str) -> str:
    """roles/base's apt source template, rendered by Ansible's own templar."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    from sovinfra import paths

    variables = {
        "ansible_managed": "Ansible managed",
        "inventory_hostname": host,
        "groups": {"model_mirror": ["mirror1"], "gpu_nodes": ["gpu1"]},
        "site_packages_dir": "/srv/sovinfra/packages",
        "site_mirror_host": "10.0.0.10",
        "__site_apt_snapshot_id": "20261202T101832Z",
    }
    template = paths.project_root() / "roles" / "base" / "templates" / "sovinfra-site.sources.j2"
    return str(
        Templar(loader=DataLoader(), variables=variables).template(trust_as_template(template.read_text()))
    )


def test_the_base_roles_apt_source_is_signed_inside_and_frozen() -> None:
    path = "/etc/apt/sources.list.d/sovinfra-site.sources"
    node = _render_site_source("gpu1")
    mirror = _render_site_source("mirror1")
    assert "URIs: http://10.0.0.10/packages/site" in node and "Suites: 20261202T101832Z" in node
    # The mirror host reads its own copy: it has no mirror to ask before nginx is installed from it.
    assert "URIs: file:/srv/sovinfra/packages/site" in mirror
    for text in (node, mirror):
        assert "Signed-By: /etc/apt/keyrings/sovinfra-site.gpg" in text and "Check-Valid-Until: no" in text
        assert "trusted" not in text.lower()
        assert findings({path: text}) == []


def test_a_containerd_node_without_a_site_mirror_for_a_registry_is_flagged() -> None:
    mirrored = {
        "/etc/containerd/config.toml": "version = 2\n",
        "/etc/containerd/certs.d/docker.io/hosts.toml": 'server = "http://10.0.0.10:5000/v2/docker.io"\n',
    }
    assert audit.unmirrored_registries("gpu1", mirrored, ["docker.io"]) == []
    [finding] = audit.unmirrored_registries("gpu1", mirrored, ["docker.io", "nvcr.io"])
    assert (finding.value, finding.file) == ("nvcr.io", "/etc/containerd/certs.d/nvcr.io/hosts.toml")
    assert "pulls from the registry itself" in finding.problem
    # No containerd on the host: nothing to pull with, nothing to flag.
    assert audit.unmirrored_registries("gpu1", {}, ["docker.io"]) == []
    # The config is read only to know containerd is there: it is not a source.
    assert audit.host_sources("gpu1", mirrored)[0] == [
        audit.Source(
            "gpu1",
            "registry",
            "/etc/containerd/certs.d/docker.io/hosts.toml",
            "http://10.0.0.10:5000/v2/docker.io",
        )
    ]
