"""The site endpoint's routing table and HAProxy configuration, rendered from services as declared."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from sovinfra.inference.gateway import GatewayError, routes
from sovinfra.loadtest import targets
from sovinfra.loadtest.metrics import SLO
from tests.conftest import ROOT, trusted

ROLE = ROOT / "roles" / "inference_gateway"


def svc(name: str, port: int, model: str | None = None, key: str | None = "k1", repo: str = "org/m") -> dict:
    return {"name": name, "port": port, "repo": repo, "served_model_name": model, "api_key": key}


SERVICES = {
    "gpu2": ("10.0.0.12", [svc("tiny", 8000, "tiny"), svc("big", 8001, None, None, "org/Big Model")]),
    "gpu1": ("10.0.0.11", [svc("tiny-a", 8000, "tiny")]),
}


def test_one_route_per_model_with_every_replica() -> None:
    table = routes(SERVICES)
    assert [r["model"] for r in table] == ["org/Big Model", "tiny"]
    big, tiny = table
    assert big["backend"] == "model_org_Big_Model" and big["api_key"] is None
    assert [(r["name"], r["address"], r["port"]) for r in tiny["replicas"]] == [
        ("gpu1", "10.0.0.11", 8000),
        ("gpu2", "10.0.0.12", 8000),
    ]
    assert routes({}) == []


def test_replicas_of_a_model_must_share_its_key() -> None:
    services = {**SERVICES, "gpu3": ("10.0.0.13", [svc("tiny", 8000, "tiny", key="other")])}
    with pytest.raises(
        GatewayError, match=r"model 'tiny': service 'tiny' on gpu3 and service 'tiny-a' on gpu1"
    ):
        routes(services)


PLAIN_VARS = (
    "__inference_gateway_unauthorized",
    "__inference_gateway_admin_socket",
    "__inference_gateway_state_file",
)


def render(table: list[dict], **overrides: object) -> str:
    """The role's haproxy.cfg for these routes (the role's defaults and plain vars, then `overrides`)."""
    variables = {
        **yaml.safe_load((ROLE / "defaults" / "main.yml").read_text()),
        **{
            k: v
            for k, v in yaml.safe_load((ROLE / "vars" / "main.yml").read_text()).items()
            if k in PLAIN_VARS
        },
        "ansible_managed": "managed",
        "inference_gateway_listen": "10.0.0.10:4000",
        "inference_gateway_metrics_listen": "10.0.0.10:8405",
        "__inference_gateway_routes": table,
        **overrides,
    }
    return Templar(loader=DataLoader(), variables=variables).template(
        trusted((ROLE / "templates" / "haproxy.cfg.j2").read_text())
    )


def test_the_configuration_routes_checks_and_lists() -> None:
    cfg = render(routes(SERVICES))
    assert "    bind 10.0.0.10:4000\n" in cfg  # the site address only
    assert "\n    option http-no-delay\n" in cfg.split("\nfrontend")[0]  # streams are not gathered
    # Drain state survives reloads; a refused connection is retried on another replica.
    assert (
        "server-state-file /var/lib/haproxy/server-state" in cfg
        and "load-server-state-from-file global" in cfg
    )
    assert "option redispatch 1" in cfg and "stats socket /run/haproxy/admin.sock " in cfg
    assert "    bind 10.0.0.10:8405\n    http-request use-service prometheus-exporter" in cfg
    backends = dict(re.findall(r"^backend (\S+)\n((?:    .*\n?)*)", cfg, re.M))
    assert set(backends) == {"model_org_Big_Model", "model_tiny"}
    tiny = backends["model_tiny"]
    assert "balance leastconn" in tiny and "http-check expect status 200" in tiny
    assert re.findall(r"server (\S+) (\S+) check", tiny) == [
        ("gpu1", "10.0.0.11:8000"),
        ("gpu2", "10.0.0.12:8000"),
    ]
    assert (
        'hdr Authorization "Bearer k1"' in tiny and "hdr Authorization" not in backends["model_org_Big_Model"]
    )
    # The keyed model refuses another key before any backend; a model without a key needs none.
    assert re.search(r"return status 401 .* if model_2 !key_2", cfg) and "!key_1" not in cfg
    # /v1/models answers the site's list (valid JSON once HAProxy unquotes it); open, as one model has no key.
    listing = re.search(
        r"return status 200 content-type application/json string (\".*\") if \{ path /v1/models \}", cfg
    )
    assert listing and [m["id"] for m in json.loads(json.loads(listing[1]))["data"]] == [
        "org/Big Model",
        "tiny",
    ]
    assert "!any_key" not in cfg
    assert "unless known_model" in cfg
    # Every http-request rule before the first use_backend (HAProxy runs them first whatever the order).
    assert cfg.rindex("http-request") < cfg.index("use_backend")


def test_a_site_where_every_model_has_a_key_keeps_the_list_behind_one() -> None:
    cfg = render(routes({"gpu1": ("10.0.0.11", [svc("tiny", 8000, "tiny")])}))
    assert 'acl any_key req.hdr(authorization) -m str "Bearer k1"' in cfg
    assert re.search(r"return status 401 .* if \{ path /v1/models \} !any_key", cfg)


def test_verify_load_targets_the_site_endpoint_once_per_model() -> None:
    load = targets.LoadSize(4, 16, 2, 32, 16, 30.0)
    base = targets.Target(
        "gpu1", "tiny", "http://10.0.0.11:8000", "tiny", "k1", SLO(100, 10, None), 0.9, 0.0, load, None
    )
    nodes = [base, targets.replace(base, host="gpu2", url="http://10.0.0.12:8000")]
    nodes.append(targets.replace(base, service="big", model="big", api_key=None))
    site = targets.through_gateways(nodes, {"mirror1": ("http://10.0.0.10:4000", None)})
    assert [(t.host, t.service, t.url, t.model, t.api_key) for t in site] == [
        ("mirror1", "site:big", "http://10.0.0.10:4000", "big", None),
        ("mirror1", "site:tiny", "http://10.0.0.10:4000", "tiny", "k1"),
    ]
    assert targets.through_gateways(nodes, {}) == []


def test_the_lab_mirror_host_is_the_site_endpoint() -> None:
    """The lab's inventory puts its mirror host in group inference_gateway (and only it)."""
    from sovinfra.lab import config
    from sovinfra.lab import inventory as lab_inventory
    from sovinfra.lab.state import HostState, LabState

    state = LabState()
    for p in config.plan_hosts(2):
        state.hosts[p.name] = HostState(p.name, p.address, list(p.groups), 1)
    groups = lab_inventory.hosts_document(state)["all"]["children"]
    assert list(groups["inference_gateway"]["hosts"]) == ["mirror1"]
