"""The site endpoint's routing table (pure): which nodes serve each model, from the inference services.

One OpenAI-compatible base URL for the site (HAProxy on the `inference_gateway` hosts) routes a request by
its `model` to every node serving that model. Built from each inference host's `inference_services` as
the inventory declares them: a model's replicas must share one API key (the gateway checks it at the edge
and health-checks replicas with it), and model names are the services' `served_model_name` (else the
repo), as the engines answer to them.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

# HAProxy names (backends, servers, ACLs): letters, digits and . _ - only.
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class GatewayError(ValueError):
    """A declaration the gateway cannot route; the message names the hosts and services."""


@dataclass
class Replica:
    name: str  # the inventory host (the HAProxy server name)
    address: str
    port: int
    service: str


@dataclass
class Route:
    model: str
    backend: str
    api_key: str | None
    replicas: list[Replica] = field(default_factory=list)


def routes(services_by_host: dict[str, tuple[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """{host: (address, inference_services)} -> one route per served model, sorted by model, replicas by
    host. Raises GatewayError when replicas of a model disagree on its API key."""
    table: dict[str, Route] = {}
    for host in sorted(services_by_host):
        address, services = services_by_host[host]
        for svc in services or []:
            model = str(svc.get("served_model_name") or svc["repo"])
            key = svc.get("api_key")
            key = None if key in (None, "") else str(key)
            route = table.get(model)
            if route is None:
                backend = "model_" + _UNSAFE.sub("_", model)
                if any(r.backend == backend for r in table.values()):
                    backend += f"_{len(table)}"
                route = table[model] = Route(model, backend, key)
            elif route.api_key != key:
                first = route.replicas[0]
                raise GatewayError(
                    f"model {model!r}: service {svc['name']!r} on {host} and service {first.service!r} on "
                    f"{first.name} have different api_key values; the site endpoint checks one key per model"
                )
            route.replicas.append(Replica(host, str(address), int(svc["port"]), str(svc["name"])))
    return [asdict(table[m]) for m in sorted(table)]
