# The inference role's planner as a Jinja filter: the role renders exactly what the unit tests check.
from __future__ import annotations

from ansible.errors import AnsibleFilterError

from sovinfra.inference.plan import PlanError, models, plan


def inference_plan(services, settings, gpu_count, host_address):
    try:
        return plan(list(services or []), dict(settings), int(gpu_count), str(host_address))
    except PlanError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self):
        return {"sovinfra_inference_plan": inference_plan, "sovinfra_inference_models": models}
