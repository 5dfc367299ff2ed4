"""A rolling upgrade's plan and outcome (pure): batch sizes, batches, and what happened to each host.

`sovinfra upgrade` turns --batch into a size, asks a check run of playbooks/upgrade.yml which nodes would
change, upgrades only those (in name order, as the play orders them), and reads the run's events back
into one outcome per host.
"""

from __future__ import annotations

import re
from typing import Any

from sovinfra.errors import UserError

_BATCH = re.compile(r"^\s*(\d+)\s*(%?)\s*$")


def batch_size(value: str, fleet: int) -> int:
    """--batch N or N% of the `fleet` nodes in scope -> nodes per batch (a percentage rounds down, at
    least 1). Zero, more than the fleet or over 100% is refused before anything runs."""
    found = _BATCH.match(value)
    if not found:
        raise UserError(f"--batch {value!r}: a number of nodes (2) or a percentage of them (25%)")
    number, percent = int(found.group(1)), bool(found.group(2))
    if number == 0:
        raise UserError(f"--batch {value}: a batch of no nodes upgrades nothing")
    if percent:
        if number > 100:
            raise UserError(f"--batch {value}: over 100% of the {fleet} nodes")
        return max(1, fleet * number // 100)
    if number > fleet:
        raise UserError(f"--batch {value}: more than the {fleet} node(s) in scope")
    return number


def batches(hosts: list[str], size: int) -> list[list[str]]:
    ordered = sorted(hosts)
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def planned_changes(changes: list[dict[str, str]], hosts: list[str]) -> dict[str, list[str]]:
    """{host: tasks a check run would change} for the hosts with any (task names without their role)."""
    plan: dict[str, list[str]] = {}
    for change in changes:
        if change["host"] in hosts:
            task = change["task"].split(" : ")[-1]
            if task not in plan.setdefault(change["host"], []):
                plan[change["host"]].append(task)
    return plan


def outcome(plan: list[list[str]], recap: dict[str, Any]) -> list[dict[str, Any]]:
    """Each planned batch with each host's result: upgraded, failed (with the task and why), stopped
    (in the failed batch, left out of the site endpoint) or not reached (after the stop)."""
    failures: dict[str, dict[str, str]] = {}
    for f in recap["failures"]:
        failures.setdefault(f["host"], f)  # the first: what stopped it
    stopped = False
    done = []
    for number, hosts in enumerate(plan, 1):
        failed = bool(failures.keys() & set(hosts))
        rows = []
        for host in hosts:
            if stopped or host not in recap["hosts"]:
                rows.append({"host": host, "result": "not reached"})
            elif host in failures:
                why = failures[host]
                rows.append({"host": host, "result": "failed", "task": why["task"], "why": why["msg"]})
            elif failed:
                rows.append({"host": host, "result": "stopped"})
            else:
                rows.append({"host": host, "result": "upgraded"})
        done.append({"batch": number, "hosts": rows})
        stopped = stopped or failed
    return done
