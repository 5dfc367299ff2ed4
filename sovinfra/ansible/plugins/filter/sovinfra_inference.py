# The inference role's planner as a Jinja filter: the role renders exactly what the unit tests check.
from __future__ import annotations

from ansible.errors import AnsibleFilterError

from sovinfra.inference.gateway import GatewayError, routes
from sovinfra.inference.plan import PlanError, metrics_jobs, models, plan


def inference_plan(services, settings, gpu_count, host_address):
    try:
        return plan(list(services or []), dict(settings), int(gpu_count), str(host_address))
    except PlanError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def gateway_routes(inference_hosts):
    """{host: [address, services, default engine]} (the site role's __site_inference_hosts) -> routes."""
    try:
        return routes({str(h): (str(v[0]), list(v[1] or [])) for h, v in dict(inference_hosts).items()})
    except GatewayError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def engine_metrics(inference_hosts):
    """{host: [address, services, default engine]} -> one scrape job per engine that serves metrics."""
    hosts = dict(inference_hosts)
    return metrics_jobs({str(h): (str(v[0]), list(v[1] or []), str(v[2])) for h, v in hosts.items()})


class FilterModule:
    def filters(self):
        return {
            "sovinfra_inference_plan": inference_plan,
            "sovinfra_inference_models": models,
            "sovinfra_gateway_routes": gateway_routes,
            "sovinfra_engine_metrics": engine_metrics,
        }
