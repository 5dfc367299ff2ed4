"""Inference endpoints from the inventory: URLs, SLOs, jump hosts, vaulted API keys (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret

from sovinfra import paths
from sovinfra.errors import UserError
from sovinfra.fleet import ssh_options
from sovinfra.inventory import model, site
from sovinfra.loadtest import targets

VAULT = VaultLib([("default", VaultSecret(b"pw"))])


@pytest.mark.parametrize(
    ("args", "spec"),
    [
        ("-o ProxyJump=ops@bastion:2222", "ops@bastion:2222"),
        ("-o UserKnownHostsFile=/k -oProxyJump=bastion", "bastion"),
        ("-J jump1 -o StrictHostKeyChecking=yes", "jump1"),
        ("-o 'ProxyCommand=ssh -W %h:%p -q admin@b1'", "admin@b1"),
        ("-o ProxyJump=none", None),
        ("-o StrictHostKeyChecking=yes", None),
    ],
)
def test_proxy_jump_forms(args: str, spec: str | None) -> None:
    assert ssh_options.proxy_jump(args) == spec


def _site(tmp: Path, host_vars: dict, group_vars: dict | None = None) -> Path:
    hosts = {
        "all": {
            "children": {
                "gpu_nodes": {"hosts": {"gpu1": {"ansible_host": "10.0.0.11"}, "gpu2": None}},
                "model_mirror": {"hosts": {"bastion1": {"ansible_host": "192.0.2.5", "ansible_port": 2200}}},
                "inference": {"hosts": {"gpu1": None, "gpu2": None}},
            }
        }
    }
    (tmp / "host_vars").mkdir(parents=True)
    (tmp / "group_vars").mkdir()
    (tmp / "hosts.yml").write_text(yaml.safe_dump(hosts))
    for host, values in host_vars.items():
        (tmp / "host_vars" / f"{host}.yml").write_text(
            values if isinstance(values, str) else yaml.safe_dump(values)
        )
    (tmp / "group_vars" / "all.yml").write_text(yaml.safe_dump(group_vars or {}))
    return tmp


def _collect(path: Path, vault: object = None) -> list[targets.Target]:
    inv, _ = site.load_checked(path)
    defaults = targets.role_defaults(paths.project_root() / "roles")
    return targets.collect(inv, sorted(inv.hosts_in("inference")), defaults, vault)


def test_targets_with_slos_defaults_and_a_jump_host_from_the_inventory(tmp_path: Path) -> None:
    key = VAULT.encrypt("s3cret").decode()
    gpu1 = (
        "inference_services:\n"
        "  - {name: chat, port: 8000, repo: org/m, served_model_name: m, api_key: '{{ vault_key }}'}\n"
        "inference_slo_ttft_ms: 200\n"
        "ansible_ssh_common_args: -o UserKnownHostsFile=/lab/known_hosts -o ProxyJump=bastion1\n"
        "vault_key: !vault |\n" + "".join(f"  {line}\n" for line in key.splitlines())
    )
    gpu2 = {"inference_services": [{"name": "a", "port": 81, "repo": "o/x", "tls": True}]}
    common = {"ansible_user": "root", "inference_loadtest_concurrency": 8}
    path = _site(tmp_path, {"gpu1": gpu1, "gpu2": gpu2}, common)
    first, second = _collect(path, VAULT)
    assert (first.url, first.model, first.api_key) == ("http://10.0.0.11:8000", "m", "s3cret")
    assert first.slo.ttft_ms == 200 and first.slo.tpot_ms is None and first.load.concurrency == 8
    assert first.jump == ssh_options.Jump("192.0.2.5", 2200, "root", None, "/lab/known_hosts")
    assert (second.url, second.model, second.jump, second.api_key) == ("https://gpu2:81", "o/x", None, None)
    assert second.min_goodput == 0.95 and second.load.requests == 32  # the role's defaults


def test_secret_and_jump_errors_name_file_and_key(tmp_path: Path) -> None:
    key = VAULT.encrypt("s3cret").decode()
    vaulted = "inference_services:\n  - name: chat\n    port: 8000\n    repo: org/m\n    api_key: !vault |\n"
    vaulted += "".join(f"      {line}\n" for line in key.splitlines())
    path = _site(tmp_path / "a", {"gpu1": vaulted})
    where = r"host_vars/gpu1.yml: inference_services \(host gpu1\)\[0\].api_key: "
    with pytest.raises(UserError, match=where + ".*--vault-password-file"):
        _collect(path)
    wrong = VaultLib([("default", VaultSecret(b"other"))])
    with pytest.raises(UserError, match="cannot decrypt"):
        _collect(path, wrong)
    dangling = {"inference_services": [{"name": "c", "port": 1, "repo": "o/m", "api_key": "{{ nope }}"}]}
    with pytest.raises(UserError, match="refers to nope"):
        _collect(_site(tmp_path / "b", {"gpu1": dangling}))
    hops = {"inference_services": [{"name": "c", "port": 1, "repo": "o/m"}],
            "ansible_ssh_common_args": "-J a,b"}  # fmt: skip
    with pytest.raises(UserError, match=r"host_vars/gpu1.yml: ansible_ssh_common_args .*only one jump host"):
        _collect(_site(tmp_path / "c", {"gpu1": hops}))


def test_bad_service_is_caught_by_the_inventory_check(tmp_path: Path) -> None:
    path = _site(tmp_path, {"gpu1": {"inference_services": [{"name": "c", "port": "http"}]}})
    with pytest.raises(UserError, match=r"host_vars/gpu1.yml: inference_services"):
        site.load_checked(path)
    inv = model.load(path)
    assert model.var_file(inv, "gpu1", "inference_services").name == "gpu1.yml"


def test_the_site_endpoint_is_tested_by_default_with_what_every_node_serves(tmp_path: Path) -> None:
    """`verify load` and the acceptance run: each node's services and, unless told not to, the site endpoint
    on each chosen gateway (port from the inventory over the role default) for every model of the site."""
    path = _site(
        tmp_path,
        {
            "gpu1": {
                "inference_services": [{"name": "a", "port": 8000, "repo": "org/a", "served_model_name": "m"}]
            },
            "gpu2": {"inference_services": [{"name": "b", "port": 8000, "repo": "org/b"}]},
            "bastion1": {"site_inference_gateway_port": 4400},
        },
    )
    doc = yaml.safe_load((path / "hosts.yml").read_text())
    doc["all"]["children"]["inference_gateway"] = {"hosts": {"bastion1": None}}
    (path / "hosts.yml").write_text(yaml.safe_dump(doc))
    inv, _ = site.load_checked(path)
    roles = paths.project_root() / "roles"

    def chosen(limit: str | None, site_endpoint: bool = True) -> list[tuple[str, str, str, str]]:
        found = targets.chosen(inv, model.select_hosts(inv, limit), roles, None, site_endpoint)
        return [(t.host, t.service, t.url, t.model) for t in found]

    nodes = [("gpu1", "a", "http://10.0.0.11:8000", "m"), ("gpu2", "b", "http://gpu2:8000", "org/b")]
    site_endpoint = [
        ("bastion1", "site:m", "http://192.0.2.5:4400", "m"),
        ("bastion1", "site:org/b", "http://192.0.2.5:4400", "org/b"),
    ]
    assert chosen(None) == nodes + site_endpoint
    assert chosen(None, site_endpoint=False) == nodes
    # A gateway chosen alone is still tested with every node's models; a node alone, without the gateway.
    assert chosen("bastion1") == site_endpoint
    assert chosen("gpu2") == nodes[1:]
