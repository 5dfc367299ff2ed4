# The inference role's planner as a Jinja filter: the role renders exactly what the unit tests check.
from __future__ import annotations

from ansible.errors import AnsibleFilterError

from sovinfra.inference.gateway import GatewayError, routes
from sovinfra.inference.plan import PlanError, models, plan


def inference_plan(services, settings, gpu_count, host_address):
    try:
        return plan(list(services or []), dict(settings), int(gpu_count), str(host_address))
    except PlanError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def gateway_routes(services_by_host):
    try:
        return routes({str(h): (str(a), list(s or [])) for h, (a, s) in dict(services_by_host).items()})
    except GatewayError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self):
        return {
            "sovinfra_inference_plan": inference_plan,
            "sovinfra_inference_models": models,
            "sovinfra_gateway_routes": gateway_routes,
        }
