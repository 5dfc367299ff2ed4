"""The inventory's inference endpoints as load-test targets (pure: inventory in, targets or UserError out).

Endpoints are the `inference_services` of hosts in the `inference` group, and the site endpoint on hosts
of `inference_gateway` for each model they serve; SLOs and load size come from `inference_slo_*` /
`inference_loadtest_*` with the role's defaults underneath. A host reached through a
jump host (ProxyJump in its ssh args, as Ansible reads them) is load-tested through that jump host too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sovinfra.errors import UserError
from sovinfra.fleet import ssh_options
from sovinfra.fleet.ssh_options import Jump
from sovinfra.inventory import secrets
from sovinfra.inventory.model import Inventory, host_vars, var_file
from sovinfra.loadtest.metrics import SLO


@dataclass(frozen=True)
class LoadSize:
    concurrency: int
    requests: int
    warmup: int
    input_tokens: int
    output_tokens: int
    timeout_s: float


@dataclass(frozen=True)
class Target:
    host: str
    service: str
    url: str
    model: str
    api_key: str | None
    slo: SLO
    min_goodput: float
    max_error_rate: float
    load: LoadSize
    jump: Jump | None


def collect(inv: Inventory, hosts: list[str], defaults: dict[str, Any], vault: Any = None) -> list[Target]:
    targets = []
    for host in hosts:
        variables = {**defaults, **host_vars(inv, host)}
        services = variables.get("inference_services") or []
        where = f"{var_file(inv, host, 'inference_services')}: inference_services (host {host})"
        if not isinstance(services, list):
            raise UserError(f"{where}: expected a list of services")
        for n, svc in enumerate(services):
            if not isinstance(svc, dict) or not svc.get("name") or not svc.get("port") or not svc.get("repo"):
                raise UserError(f"{where}[{n}]: each service needs name, port and repo")
            scheme = "https" if svc.get("tls") else "http"
            address = svc.get("address") or variables.get("ansible_host", host)
            api_key = svc.get("api_key")
            if api_key is not None:
                api_key = secrets.reveal(inv, host, variables, api_key, f"{where}[{n}].api_key", vault)
            targets.append(
                Target(
                    host=host,
                    service=str(svc["name"]),
                    url=f"{scheme}://{address}:{int(svc['port'])}",
                    model=str(svc.get("served_model_name") or svc["repo"]),
                    api_key=api_key,
                    slo=SLO(
                        variables.get("inference_slo_ttft_ms"),
                        variables.get("inference_slo_tpot_ms"),
                        variables.get("inference_slo_e2e_ms"),
                    ),
                    min_goodput=float(variables["inference_slo_min_goodput"]),
                    max_error_rate=float(variables["inference_loadtest_max_error_rate"]),
                    load=LoadSize(
                        concurrency=int(variables["inference_loadtest_concurrency"]),
                        requests=int(variables["inference_loadtest_requests"]),
                        warmup=int(variables["inference_loadtest_warmup"]),
                        input_tokens=int(variables["inference_loadtest_input_tokens"]),
                        output_tokens=int(variables["inference_loadtest_output_tokens"]),
                        timeout_s=float(variables["inference_loadtest_timeout_s"]),
                    ),
                    jump=ssh_options.options(inv, host).jump,
                )
            )
    return targets


def through_gateways(
    node_targets: list[Target], gateways: dict[str, tuple[str, Jump | None]]
) -> list[Target]:
    """The site endpoint as clients use it: one target per gateway ({host: (base URL, jump)}) and model
    the nodes serve, with the first replica's key, SLOs and load (replicas of a model share its key)."""
    first: dict[str, Target] = {}
    for target in node_targets:
        first.setdefault(target.model, target)
    return [
        replace(target, host=gateway, service=f"site:{model}", url=url, jump=jump)
        for gateway, (url, jump) in sorted(gateways.items())
        for model, target in sorted(first.items())
    ]


def role_defaults(roles_dir: Path) -> dict[str, Any]:
    from sovinfra.inventory import defaults

    return defaults.role_defaults(roles_dir, "inference")


def chosen(
    inv: Inventory, hosts: list[str], roles_dir: Path, vault: Any, site_endpoint: bool
) -> list[Target]:
    """What `verify load` and the acceptance run test among `hosts`: each inference node's services, and
    unless told not to, the site endpoint on each chosen gateway for every model the site serves (a site
    endpoint routes to every replica of a model, so it is tested with what all nodes serve)."""
    from sovinfra.inventory.defaults import setting

    nodes, gateways = inv.hosts_in("inference"), inv.hosts_in("inference_gateway") & set(hosts)
    defaults = role_defaults(roles_dir)
    found = collect(inv, sorted(nodes & set(hosts)), defaults, vault)
    if not site_endpoint or not gateways:
        return found
    every = found if nodes <= set(hosts) else collect(inv, sorted(nodes), defaults, vault)
    bases = {
        gw: (
            f"http://{host_vars(inv, gw).get('ansible_host', gw)}:"
            f"{int(setting(inv, roles_dir, gw, 'site_inference_gateway_port'))}",
            ssh_options.options(inv, gw).jump,
        )
        for gw in sorted(gateways)
    }
    return found + through_gateways(every, bases)
