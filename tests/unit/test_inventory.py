"""Inventory loading and validation: every error names the file and the key, never a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sovinfra.errors import UserError
from sovinfra.inventory import model, site

HOSTS = {
    "all": {
        "children": {
            "gpu_nodes": {"hosts": {"gpu1": {"ansible_host": "10.0.0.2"}}},
            "model_mirror": {"hosts": {"m1": None}},
            "inference": None,
        }
    }
}


def write_site(tmp: Path, hosts: object = HOSTS, group_vars: dict | None = None) -> Path:
    site_dir = tmp / "site"
    site_dir.mkdir(exist_ok=True)
    (site_dir / "hosts.yml").write_text(yaml.safe_dump(hosts))
    for name, values in (group_vars or {}).items():
        (site_dir / "group_vars").mkdir(exist_ok=True)
        (site_dir / "group_vars" / f"{name}.yml").write_text(
            values if isinstance(values, str) else yaml.safe_dump(values)
        )
    return site_dir


def test_example_site_passes(example_inventory: Path) -> None:
    inv, problems = site.load_checked(example_inventory)
    assert len(inv.hosts) == 9
    assert inv.hosts_in("gpu_nodes") == {f"gpu-{r}0{i}" for r in "ab" for i in range(1, 5)}
    assert inv.hosts_in("inference") == {f"gpu-a0{i}" for i in range(1, 5)}
    assert not problems


def test_host_vars_follow_ansible_precedence(example_inventory: Path) -> None:
    inv = model.load(example_inventory)
    assert model.host_vars(inv, "gpu-b01")["base_ssh_max_auth_tries"] == 4  # rack_b beats nothing
    assert model.host_vars(inv, "gpu-b01")["preflight_min_free_gib"] == 200  # gpu_nodes beats all
    assert model.host_vars(inv, "gpu-a01")["base_extra_packages"] == ["htop", "gdb"]  # host wins
    assert model.host_vars(inv, "gpu-a02")["base_extra_packages"] == ["htop"]


@pytest.mark.parametrize(
    ("group_vars", "file", "key"),
    [
        ({"gpu_nodes": {"base_ssh_max_auth_tries": "lots"}}, "gpu_nodes.yml", "base_ssh_max_auth_tries"),
        ({"all": {"base_ssh_permit_root_login": "maybe"}}, "all.yml", "base_ssh_permit_root_login"),
        ({"all": {"base_packges": ["curl"]}}, "all.yml", "base_packges"),
        ({"all": {"preflight_gpu_pci_required": "sometimes"}}, "all.yml", "preflight_gpu_pci_required"),
        ({"gpu_nodes": {"ansible_port": 70000}}, "gpu_nodes.yml", "ansible_port"),
        ({"gpu_nodes": {"ansible_host": "bad host!"}}, "gpu_nodes.yml", "ansible_host"),
        ({"no_such_group": {"x": 1}}, "no_such_group.yml", "no_such_group"),
        ({"all": "- just\n- a list\n"}, "all.yml", "all.yml"),
        ({"all": "key: [unclosed\n"}, "all.yml", "line"),
    ],
)
def test_bad_variables_name_file_and_key(tmp_path: Path, group_vars: dict, file: str, key: str) -> None:
    with pytest.raises(UserError) as err:
        site.load_checked(write_site(tmp_path, group_vars=group_vars))
    assert file in str(err.value)
    assert key in str(err.value)


@pytest.mark.parametrize(
    ("hosts", "key"),
    [
        (["not", "a", "mapping"], "hosts.yml"),
        ({"all": {"hostz": {}}}, "all.hostz"),
        ({"all": {"children": {"bad-group": None}}}, "bad-group"),
        ({"all": {"hosts": {"has space": None}}}, "all.hosts.has space"),
        ({"all": {"hosts": ["a", "b"]}}, "all.hosts"),
        ({"all": {"hosts": {"h1": {"1bad": 1}}}}, "all.hosts.h1.1bad"),
        ({"all": {"vars": "text"}}, "all.vars"),
    ],
)
def test_bad_structure_names_file_and_key(tmp_path: Path, hosts: object, key: str) -> None:
    with pytest.raises(UserError) as err:
        site.load_checked(write_site(tmp_path, hosts=hosts))
    assert "hosts.yml" in str(err.value)
    assert key in str(err.value)


def test_missing_inventory_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no inventory here"):
        model.load(tmp_path)
    with pytest.raises(UserError, match="inventory not found"):
        site.resolve(str(tmp_path / "nope"))


def test_vault_values_and_templates_are_not_judged(tmp_path: Path) -> None:
    vault = (
        "base_ssh_password_authentication: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6231\n"
        "base_ssh_max_auth_tries: '{{ n }}'\n"
    )
    _, problems = site.load_checked(write_site(tmp_path, group_vars={"all": vault}))
    assert [p for p in problems if p.key.startswith("base_")] == []
    # The same keys with literal values of the wrong type are judged: what passed above was not ignored.
    literal = "base_ssh_password_authentication: perhaps\nbase_ssh_max_auth_tries: many\n"
    with pytest.raises(UserError) as caught:
        site.load_checked(write_site(tmp_path, group_vars={"all": literal}))
    assert "base_ssh_password_authentication" in str(caught.value)
    assert "base_ssh_max_auth_tries" in str(caught.value)


def test_missing_site_group_is_a_warning(tmp_path: Path) -> None:
    _, problems = site.load_checked(write_site(tmp_path, hosts={"all": {"hosts": {"h1": None}}}))
    assert {p.key for p in problems} == {"gpu_nodes", "model_mirror", "inference"}
    assert all(p.severity == "warning" for p in problems)


yaml_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=8), st.floats(allow_nan=False)
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
known_keys = st.sampled_from(
    [
        "base_packages",
        "base_ssh_max_auth_tries",
        "base_ssh_permit_root_login",
        "preflight_supported_os",
        "preflight_min_free_gib",
        "ansible_host",
        "ansible_port",
        "base_typo",
        "hosts",
        "vars",
        "children",
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    hosts=st.one_of(
        yaml_values, st.fixed_dictionaries({"all": st.dictionaries(known_keys, yaml_values, max_size=3)})
    ),
    group_vars=st.dictionaries(st.one_of(known_keys, st.text(max_size=6)), yaml_values, max_size=4),
)
def test_any_malformed_inventory_gives_a_named_error(tmp_path: Path, hosts: object, group_vars: dict) -> None:
    shutil.rmtree(tmp_path / "site", ignore_errors=True)
    site_dir = write_site(tmp_path, hosts=hosts, group_vars={"all": group_vars} if group_vars else None)
    try:
        _, problems = site.load_checked(site_dir)
    except UserError as exc:
        assert str(site_dir) in str(exc)  # every error names a file of this inventory
    else:
        for p in problems:
            assert str(site_dir) in str(p.file)


def test_limit_selects_hosts_and_groups(example_inventory: Path) -> None:
    inv = model.load(example_inventory)
    assert model.select_hosts(inv, "rack_b,gpu-a01", within="gpu_nodes")[:2] == ["gpu-a01", "gpu-b01"]
    assert model.select_hosts(inv, None, within="model_mirror") == ["mirror01"]
    with pytest.raises(UserError, match="'gpu-z99' matches no host or group"):
        model.select_hosts(inv, "gpu-z99")
    with pytest.raises(UserError, match="not in group gpu_nodes: mirror01"):
        model.select_hosts(inv, "mirror01", within="gpu_nodes")
    with pytest.raises(UserError, match="names no hosts to start from"):
        model.select_hosts(inv, "!rack_b")


PATTERNS = [
    "gpu_nodes:!rack_b",
    "gpu_nodes,!gpu-a02",
    "gpu_nodes:&inference",
    "all:!gpu_nodes",
    "gpu-b*",
    "~gpu-a0[12]",
    "rack_a:rack_b:&inference:!gpu-a04",
    "mirror01,gpu-b03",
    "all",
]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_limit_is_the_host_pattern_ansible_resolves(example_inventory: Path, pattern: str) -> None:
    """Every verb's --limit selects what `ansible-playbook --limit` would (asked of Ansible itself)."""
    listed = subprocess.run(
        ["ansible", "-i", str(example_inventory), "all", "--list-hosts", "--limit", pattern],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "ANSIBLE_CONFIG": str(example_inventory.parent.parent / "ansible.cfg")},
    ).stdout
    ansible_hosts = sorted(line.strip() for line in listed.splitlines()[1:] if line.strip())
    assert model.select_hosts(model.load(example_inventory), pattern) == ansible_hosts


def test_inference_declarations_are_checked_before_any_run(tmp_path: Path) -> None:
    pinned = {"name": "a", "port": 8000, "repo": "o/m", "revision": "b" * 40, "file": "m.gguf"}
    services = [pinned, {**pinned, "name": "b"}, {**pinned, "name": "c", "port": 8001, "revision": "main"}]
    inv, _ = site.load_checked(
        write_site(tmp_path, group_vars={"gpu_nodes": {"inference_services": services}})
    )
    with pytest.raises(UserError) as err:
        site.check_deployable(inv, {})
    text = str(err.value)
    assert "gpu_nodes.yml: inference_services: inference_services[1] (b).port: 8000 is already taken" in text
    assert "inference_services[2] (c).revision: pin a 40-hex commit" in text
    good, _ = site.load_checked(
        write_site(tmp_path, group_vars={"gpu_nodes": {"inference_services": [pinned]}})
    )
    site.check_deployable(good, {})
    with pytest.raises(UserError, match=r"-e: inference_services: .*\.file: llama_cpp serves one \.gguf"):
        site.check_deployable(good, {"inference_services": [{**pinned, "file": None}]})


def test_inventory_check_refuses_an_image_without_a_digest(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from sovinfra.cli import cli

    vllm = {"name": "v", "port": 8000, "repo": "o/m", "revision": "b" * 40, "engine": "vllm"}
    tagged = write_site(
        tmp_path,
        group_vars={"gpu_nodes": {"inference_services": [{**vllm, "image": "vllm/vllm-openai:v0.11.0"}]}},
    )
    result = CliRunner().invoke(cli, ["inventory", "check", "-i", str(tagged)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "group_vars/gpu_nodes.yml: inference_services: inference_services[0] (v).image: " in result.output
    assert "no digest; pin the image as docker.io/vllm/vllm-openai@sha256:<digest>" in result.output
    pinned = {**vllm, "image": "docker.io/vllm/vllm-openai@sha256:" + "d" * 64}
    good = write_site(tmp_path, group_vars={"gpu_nodes": {"inference_services": [pinned]}})
    assert CliRunner().invoke(cli, ["inventory", "check", "-i", str(good)]).exit_code == 0


def test_a_rack_cache_must_be_a_mirror_cache_host(tmp_path: Path) -> None:
    """model_cache_via names a host of group mirror_cache: any other name is refused before a run."""
    with_cache = {"all": {"children": {**HOSTS["all"]["children"], "mirror_cache": {"hosts": {"c1": None}}}}}
    for via, hosts in (("gpu1", with_cache), ("c2", with_cache), ("c1", HOSTS)):
        with pytest.raises(UserError) as err:
            site.load_checked(
                write_site(tmp_path, hosts=hosts, group_vars={"gpu_nodes": {"model_cache_via": via}})
            )
        assert "gpu_nodes.yml: model_cache_via: names " + via in str(err.value), err.value
        assert "not a host of group mirror_cache" in str(err.value)
    _, problems = site.load_checked(
        write_site(tmp_path, hosts=with_cache, group_vars={"gpu_nodes": {"model_cache_via": "c1"}})
    )
    assert not [p for p in problems if p.key == "model_cache_via"]
