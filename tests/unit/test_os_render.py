"""Every OS path loaded and rendered: what a Debian or Ubuntu host, x86_64 or arm64, would get from the roles.

Only Debian 12 runs in the lab; these render, with Ansible's own loader and Templar, the OS-specific vars,
repository URLs and package pins each supported OS gets, from the facts a host of that OS reports
(tests/fixtures/os_facts.yml: distribution, release, version, architecture and kernel as `setup` gives them).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from tests.conftest import ROOT, ansible_plugins, trusted

ROLES = ROOT / "roles"
FACTS: dict[str, dict[str, Any]] = yaml.safe_load((ROOT / "tests" / "fixtures" / "os_facts.yml").read_text())
# Debian policy 5.6.1: lower case letters, digits, + - . ; at least two characters, starting alphanumeric.
PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
ROLES_WITH_OS_VARS = sorted({p.parent.parent.name for p in ROLES.glob("*/vars/*.yml") if p.stem != "main"})
LOADER = DataLoader()


def load(path: Path) -> Any:
    return LOADER.load_from_file(str(path), trusted_as_template=True)


def all_defaults() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in sorted(ROLES.glob("*/defaults/main.yml")):
        merged.update(load(path) or {})
    return merged


def os_vars_file(role: str, facts: dict[str, Any]) -> Path | None:
    """The file the role's include_vars picks: first_found over distribution, then OS family."""
    for name in (facts["distribution"], facts["os_family"]):
        candidate = ROLES / role / "vars" / f"{name}.yml"
        if candidate.is_file():
            return candidate
    return None


def templar(facts: dict[str, Any], extra: dict[str, Any] | None = None) -> Templar:
    variables: dict[str, Any] = {
        **all_defaults(),
        **(load(ROLES / "nvidia_repo" / "vars" / "main.yml") or {}),
        **(load(ROLES / "site" / "vars" / "main.yml") or {}),
        "ansible_facts": facts,
        "groups": {"all": ["mirror1", "gpu1"], "model_mirror": ["mirror1"], "gpu_nodes": ["gpu1"]},
        "hostvars": {"mirror1": {"ansible_host": "10.0.0.1"}, "gpu1": {"ansible_host": "10.0.0.2"}},
        "inventory_hostname": "gpu1",
        "inventory_dir": str(ROOT / "inventory" / "example"),
        "playbook_dir": str(ROOT / "playbooks"),
        **(extra or {}),
    }
    return Templar(loader=LOADER, variables=variables)


def plain(value: Any) -> Any:
    """Ansible's rendered containers as plain Python (each element read, so each is rendered)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def names_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [n for v in value.values() for n in names_in(v)]
    if isinstance(value, list):
        return [n for v in value for n in names_in(v)]
    return []


@pytest.mark.parametrize(
    "path",
    sorted(p.relative_to(ROOT) for p in [*ROLES.rglob("*.yml"), *(ROOT / "playbooks").rglob("*.yml")]),
    ids=str,
)
def test_every_yaml_file_loads_with_ansibles_loader(path: Path) -> None:
    assert load(ROOT / path) is not None, f"{path} is empty"


def test_fixtures_cover_exactly_the_supported_and_declared_systems() -> None:
    supported = load(ROLES / "preflight" / "defaults" / "main.yml")["preflight_supported_os"]
    fixtures = {(f["distribution"], str(f["_supported_as"])) for f in FACTS.values()}
    assert fixtures == {(d, str(v)) for d, versions in supported.items() for v in versions}
    for meta in ROLES.glob("*/meta/main.yml"):
        for platform in (load(meta).get("galaxy_info") or {}).get("platforms") or []:
            for release in platform["versions"]:
                assert any(
                    f["distribution"] == platform["name"] and f["distribution_release"] == release
                    for f in FACTS.values()
                ), f"{meta}: {platform['name']} {release} is declared but no test renders it"
    assert {f["architecture"] for f in FACTS.values()} == {"x86_64", "aarch64"}


@pytest.mark.parametrize("system", sorted(FACTS))
@pytest.mark.parametrize("role", ROLES_WITH_OS_VARS)
def test_os_vars_exist_and_render_to_package_names(role: str, system: str) -> None:
    facts = FACTS[system]
    path = os_vars_file(role, facts)
    assert path is not None, f"roles/{role}/vars has no file for {facts['distribution']}"
    rendered = plain(templar(facts).template(load(path)))
    text = yaml.safe_dump(rendered)
    assert "{{" not in text and "}}" not in text, text
    packages = [k for k in rendered if "packages" in k or "precompiled" in k]
    for key in packages:
        for name in names_in(rendered[key]):
            assert PACKAGE_NAME.match(name), f"{path.name}: {key}: {name!r} is not a package name"


@pytest.mark.parametrize("system", sorted(FACTS))
def test_repository_urls_follow_nvidias_layout(system: str) -> None:
    facts = FACTS[system]
    t = templar(facts)
    cuda = plain(t.template(all_defaults()["nvidia_repo_url"]))
    distro = (
        f"ubuntu{facts['distribution_version'].replace('.', '')}"
        if facts["distribution"] == "Ubuntu"
        else f"debian{facts['distribution_major_version']}"
    )
    arch = "sbsa" if facts["architecture"] == "aarch64" else "x86_64"
    assert cuda.endswith(f"/packages/cuda/repos/{distro}/{arch}"), cuda
    toolkit = plain(t.template(all_defaults()["nvidia_container_toolkit_repo_url"]))
    deb_arch = "arm64" if facts["architecture"] == "aarch64" else "amd64"
    assert toolkit.endswith(f"/packages/libnvidia-container/stable/deb/{deb_arch}"), toolkit


@pytest.mark.parametrize("system", sorted(FACTS))
def test_nvidia_key_follows_the_nodes_repository(system: str) -> None:
    """The key file and fingerprint are those of the node's own repository; Debian 13's repository is
    signed by another key, whose fingerprint is not pinned: the role's assert refuses it until a site sets
    one (the key is never taken unchecked)."""
    facts = FACTS[system]
    url = plain(templar(facts).template(all_defaults()["nvidia_repo_key_url"]))
    fingerprint = plain(templar(facts).template(all_defaults()["nvidia_repo_key_fingerprint"]))
    tasks = load(ROLES / "nvidia_repo" / "tasks" / "add_repo_signed.yml")
    check = next(
        t["ansible.builtin.assert"]["that"]
        for t in tasks
        if str(t.get("name", "")).startswith("A fingerprint")
    )
    variables = {"__nvidia_repo_add_key_fingerprint": fingerprint}
    accepted = templar(facts, variables).template(trusted("{{ " + check + " }}"))
    arch = "sbsa" if facts["architecture"] == "aarch64" else "x86_64"
    if (facts["distribution"], facts["distribution_major_version"]) == ("Debian", "13"):
        assert url.endswith(f"/cuda/repos/debian13/{arch}/8793f200.pub"), url
        assert fingerprint == "" and accepted is False
    else:
        assert url.endswith(f"/{arch}/3bf863cc.pub"), url
        assert fingerprint == "EB693B3035CD5710E231E123A4B469963BF863CC" and accepted is True


def driver_install_names(facts: dict[str, Any], modules: str, source: str) -> list[str]:
    """The apt names the driver role's install task asks for, rendered from the task itself."""
    tasks = load(ROLES / "nvidia_driver" / "tasks" / "main.yml")
    task = next(t for t in tasks if str(t.get("name", "")).startswith("Install the driver at"))
    path = os_vars_file("nvidia_driver", facts)
    assert path is not None
    extra = {
        **(load(path) or {}),
        **task.get("vars", {}),
        "nvidia_driver_kernel_modules": modules,
        "nvidia_driver_module_source": source,
    }
    return plain(templar(facts, extra).template(task["ansible.builtin.apt"]["name"]))


@pytest.mark.parametrize("system", sorted(FACTS))
@pytest.mark.parametrize("modules", ["open", "proprietary"])
def test_driver_packages_are_pinned_to_the_driver_version(system: str, modules: str) -> None:
    facts = FACTS[system]
    version = plain(templar(facts).template(all_defaults()["nvidia_driver_version"]))
    names = driver_install_names(facts, modules, "dkms")
    assert names and all(n.endswith(f"={version}-*") for n in names), names


@pytest.mark.parametrize("modules", ["open", "proprietary"])
@pytest.mark.parametrize("system", [s for s in sorted(FACTS) if FACTS[s]["distribution"] == "Ubuntu"])
def test_ubuntu_precompiled_modules_follow_the_kernel_not_the_driver(system: str, modules: str) -> None:
    """Canonical versions linux-modules-nvidia-* by kernel ABI (6.8.0-49.49): a driver pin never matches."""
    facts = FACTS[system]
    names = driver_install_names(facts, modules, "precompiled")
    kernel_side = [
        n for n in names if n.startswith(("linux-modules-", "linux-objects-", "linux-signatures-"))
    ]
    assert kernel_side, names
    for name in kernel_side:
        assert "=" not in name, f"{name}: pinned to the driver's version, which this package never has"
        assert name.endswith(facts["kernel"]), name


UNSUPPORTED = {
    "rocky9": {"distribution": "Rocky", "os_family": "RedHat", "distribution_version": "9.4",
               "distribution_major_version": "9"},
    "debian11": {"distribution": "Debian", "os_family": "Debian", "distribution_version": "11.11",
                 "distribution_major_version": "11"},
    "ubuntu2004": {"distribution": "Ubuntu", "os_family": "Debian", "distribution_version": "20.04",
                   "distribution_major_version": "20"},
}  # fmt: skip


@pytest.mark.parametrize("system", [*sorted(FACTS), *sorted(UNSUPPORTED)])
def test_preflight_accepts_exactly_the_supported_systems(system: str) -> None:
    """Preflight's first task (before any role changes anything) passes every supported system and
    refuses any other in one line naming the system and the supported list."""
    facts = FACTS.get(system) or UNSUPPORTED[system]
    task = next(t for t in load(ROLES / "preflight" / "tasks" / "main.yml") if "assert" in str(t))
    t = templar(facts, load(ROLES / "preflight" / "defaults" / "main.yml"))
    verdicts = []
    for that in task["ansible.builtin.assert"]["that"]:  # as assert does: up to the first false one
        verdicts.append(t.template(trusted("{{ " + that + " }}")))
        if verdicts[-1] is not True:
            break
    assert all(v is True for v in verdicts) is (system in FACTS), verdicts
    message = plain(t.template(task["ansible.builtin.assert"]["fail_msg"]))
    assert f"{facts['distribution']} {facts['distribution_version']} is not supported" in message
    assert "'Debian': ['12', '13']" in message and "\n" not in message.strip()


@pytest.fixture(scope="module")
def lookups() -> None:
    ansible_plugins()


@pytest.mark.parametrize("recorded", [["bookworm"], ["bookworm", "trixie"], None])
@pytest.mark.parametrize("system", ["debian12-x86_64", "debian13-x86_64"])
def test_preflight_holds_the_hosts_release_against_the_snapshots(
    system: str, recorded: list[str] | None, tmp_path: Path, lookups: None
) -> None:
    """A host of a release the site package snapshot was not made for is refused before anything changes
    (it would be handed another release's packages); a snapshot that recorded no releases is not judged."""
    facts = FACTS[system]
    snapshots = tmp_path / "packages" / "snapshots"
    snapshots.mkdir(parents=True)
    doc = {"id": "20261203T000000Z", **({"releases": recorded} if recorded is not None else {})}
    (snapshots / "20261203T000000Z.json").write_text(json.dumps(doc))
    task = next(
        t
        for t in load(ROLES / "preflight" / "tasks" / "main.yml")
        if str(t.get("name", "")).startswith("The site package snapshot")
    )
    t = templar(facts, {"site_store": str(tmp_path), "__site_apt_snapshot_id": "20261203T000000Z"})
    t = templar(facts, {**t.available_variables, **task["vars"]})
    accepted = t.template(trusted("{{ " + task["ansible.builtin.assert"]["that"] + " }}"))
    assert accepted is (recorded is None or facts["distribution_release"] in recorded)
    if not accepted:
        message = plain(t.template(task["ansible.builtin.assert"]["fail_msg"]))
        assert (
            "Debian 13.8 (trixie): the site package snapshot 20261203T000000Z holds bookworm only" in message
        )


@pytest.mark.parametrize(
    ("live", "stale"),
    [
        ({}, False),
        ({"os_version": "12"}, True),  # re-imaged onto Debian 12 since its Debian 13 facts were cached
        ({"kernel": "6.12.99+deb13-amd64"}, True),  # booted into another kernel
        ({"arch": "aarch64"}, True),
    ],
)
def test_preflight_gathers_facts_again_when_the_host_changed(live: dict[str, str], stale: bool) -> None:
    """Cached facts (ansible.cfg) of a host re-imaged, moved to another release or kernel are refreshed
    before anything is judged or installed by them; a host as cached is not asked again."""
    facts = FACTS["debian13-x86_64"]
    task = next(t for t in load(ROLES / "preflight" / "tasks" / "main.yml") if "ansible.builtin.setup" in t)
    state = {"os_version": "13", "kernel": facts["kernel"], "arch": facts["architecture"], **live}
    verdict = templar(facts, {"__preflight_state": state}).template(trusted("{{ " + task["when"] + " }}"))
    assert verdict is stale
    first_judgement = next(
        i
        for i, t in enumerate(load(ROLES / "preflight" / "tasks" / "main.yml"))
        if "ansible.builtin.assert" in t
    )
    assert load(ROLES / "preflight" / "tasks" / "main.yml").index(task) < first_judgement
