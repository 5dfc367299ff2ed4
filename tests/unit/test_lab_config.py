"""The lab's pure parts: host plan, firewall rules and the inventory it writes."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sovinfra.inventory import model, site
from sovinfra.lab import box, config, network, nvidia_repo
from sovinfra.lab import inventory as lab_inventory
from sovinfra.lab.state import HostState, LabState
from sovinfra.mirror import apt_plan


def test_plan_has_one_mirror_and_n_gpu_nodes() -> None:
    plans = config.plan_hosts(3)
    assert [p.name for p in plans] == ["mirror1", "gpu1", "gpu2", "gpu3"]
    assert len({p.address for p in plans}) == 4
    assert all(p.address.startswith("10.213.7.") for p in plans)
    assert plans[1].machine == "svlab-gpu1"


def test_release_plans() -> None:
    """One release for every host, or mixed: the mirror host and odd GPU nodes Debian 12, even ones 13."""
    assert {p.release for p in config.plan_hosts(3)} == {"bookworm"}
    assert {p.release for p in config.plan_hosts(3, "trixie")} == {"trixie"}
    mixed = {p.name: p.release for p in config.plan_hosts(4, "mixed")}
    assert mixed == {
        "mirror1": "bookworm",
        "gpu1": "bookworm",
        "gpu2": "trixie",
        "gpu3": "bookworm",
        "gpu4": "trixie",
    }
    # Every release the lab runs has a stand-in CUDA tree in NVIDIA's layout, a base recipe and a Python.
    assert nvidia_repo.CUDA_REPOS == ("cuda/repos/debian12/x86_64", "cuda/repos/debian13/x86_64")
    assert set(config.RELEASE_PYTHON) == set(config.RELEASES)
    assert config.base_recipe("bookworm") != config.base_recipe("trixie")


def test_proxied_inventory_publishes_every_releases_nvidia_tree(tmp_path: Path) -> None:
    state = LabState(subnet="10.213.7.0/24", gateway="10.213.7.1", release="mixed")
    for p in config.plan_hosts(2, "mixed"):
        state.hosts[p.name] = HostState(p.name, p.address, list(p.groups), 1, p.release)
    repos = nvidia_repo.StandinRepos(tmp_path / "repos", "647918C05EDD29E1A8E2F83A0F0FF1D5A2827549")
    lab_inventory.write(state, tmp_path / "lab", tmp_path, repos)
    inv, problems = site.load_checked(tmp_path / "lab")
    assert not problems
    trees = [t["name"] for t in model.host_vars(inv, "mirror1")["model_mirror_package_trees"]]
    assert trees == [*nvidia_repo.CUDA_REPOS, nvidia_repo.CONTAINER_TOOLKIT_REPO]


def test_nft_rules_drop_and_count_everything_leaving_the_lab() -> None:
    rules = network.nft_ruleset("10.213.7.0/24")
    assert f'iifname "{config.BRIDGE}" counter name egress drop' in rules
    assert f'oifname "{config.BRIDGE}" drop' in rules
    # This machine's other addresses count as outside; the lab subnet and link-local traffic do not.
    assert (
        'iifname "svlab0" ip daddr != { 10.213.7.0/24 } ip daddr != { 224.0.0.0/4, 255.255.255.255 }' in rules
    )
    proc = subprocess.run(["nft", "-c", "-f", "-"], input=rules, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_written_inventory_passes_the_check(tmp_path: Path) -> None:
    state = LabState(subnet="10.213.7.0/24", gateway="10.213.7.1")
    for p in config.plan_hosts(2):
        state.hosts[p.name] = HostState(p.name, p.address, list(p.groups), 1)
    repos = nvidia_repo.StandinRepos(tmp_path / "repos", "647918C05EDD29E1A8E2F83A0F0FF1D5A2827549")
    lab_inventory.write(state, tmp_path / "lab", tmp_path, repos)
    inv, problems = site.load_checked(tmp_path / "lab")
    assert inv.hosts_in("gpu_nodes") == {"gpu1", "gpu2"}
    assert inv.hosts_in("model_mirror") == {"mirror1"}
    assert not problems
    text = (tmp_path / "lab" / "group_vars" / "all.yml").read_text()
    assert "StrictHostKeyChecking=yes" in text
    assert "http://10.213.7.1:3142" in text and "site_apt_snapshot" not in text


def test_air_gapped_inventory_has_no_proxy_and_the_snapshot(tmp_path: Path) -> None:
    state = LabState(subnet="10.213.7.0/24", gateway="10.213.7.1", air_gapped=True)
    for p in config.plan_hosts(1):
        state.hosts[p.name] = HostState(p.name, p.address, list(p.groups), 1)
    repos = nvidia_repo.StandinRepos(tmp_path / "repos", "647918C05EDD29E1A8E2F83A0F0FF1D5A2827549")
    lab_inventory.write(state, tmp_path / "lab", tmp_path, repos)
    inv, problems = site.load_checked(tmp_path / "lab")
    assert not problems
    written = model.host_vars(inv, "gpu1")
    assert written["site_apt_snapshot"] == "current"
    assert "base_apt_proxy_url" not in written and "base_apt_proxy_direct_hosts" not in written
    # The snapshot also holds what the lab's base image and the Vagrant box are built with.
    assert set(config.BASE_PACKAGES) | set(box.PACKAGES) <= set(written["model_mirror_apt_packages"])
    # NVIDIA's upstreams are the stand-ins, served on this machine's loopback only; Debian's stay the
    # site default's; the result is a declaration the sync accepts.
    upstreams = apt_plan.parse_upstreams(written["model_mirror_apt_upstreams"], "all.yml")
    assert [u.name for u in upstreams] == [
        "debian",
        "debian-security",
        "nvidia-cuda",
        "nvidia-container-toolkit",
    ]
    cuda = upstreams[2]
    assert cuda.flat and cuda.url == f"http://127.0.0.1:{config.NVIDIA_UPSTREAM_PORT}/{nvidia_repo.CUDA_REPO}"
    assert cuda.key_fingerprints == (repos.fingerprint,)
    assert upstreams[0].url == "http://deb.debian.org/debian"
    # No tree beside the snapshot, no repository of NVIDIA's own on the hosts.
    assert "model_mirror_package_trees" not in written and "nvidia_repo_key_url" not in written
