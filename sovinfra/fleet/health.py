"""Fleet health: run the node agent everywhere (pyinfra fact), then judge and tabulate (pure)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pyinfra.api import FactBase

from sovinfra.fleet.connection import HostRead

# Statuses that fail a fleet verification (degraded = warnings only, which pass).
FAILING = {"unhealthy", "cannot_run", "unreachable", "agent_missing", "bad_output"}


def parse_agent_output(lines: list[str]) -> dict[str, Any]:
    text = "\n".join(lines).strip()
    if not text:
        return {
            "status": "agent_missing",
            "error": "sovinfra-health printed nothing (is health_agent applied?)",
        }
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return {"status": "bad_output", "error": text[-300:]}
    if not isinstance(doc, dict) or "status" not in doc:
        return {"status": "bad_output", "error": text[-300:]}
    return doc


class AgentReport(FactBase):
    """The node agent's JSON report (its exit code is in the report's status)."""

    def command(self) -> str:
        return "sovinfra-health --json 2>/dev/null; true"

    def process(self, output: list[str]) -> dict[str, Any]:
        return parse_agent_output(output)


@dataclass
class Row:
    host: str
    status: str
    gpu: str = ""
    serial: str = ""
    bus_id: str = ""
    severity: str = ""
    check: str = ""
    message: str = ""


@dataclass
class FleetHealth:
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def failed_hosts(self) -> list[str]:
        return sorted(h for h, doc in self.hosts.items() if doc.get("status") in FAILING)

    def rows(self) -> list[Row]:
        """One row per host and GPU with a finding above ok; one row for a host with nothing to show."""
        out = []
        for host, doc in sorted(self.hosts.items()):
            status = str(doc.get("status"))
            bad = [f for f in doc.get("findings", []) if f.get("severity") != "ok"]
            if not bad:
                detail = doc.get("error") or f"{doc.get('gpu_count', 0)} GPUs, all checks ok"
                out.append(Row(host, status, message=str(detail)))
            for f in sorted(bad, key=lambda f: (f.get("gpu_index") is None, f.get("gpu_index") or 0)):
                out.append(
                    Row(host, status, "" if f.get("gpu_index") is None else str(f["gpu_index"]),
                        f.get("serial") or "", f.get("bus_id") or "", f["severity"], f["check"], f["message"])
                )  # fmt: skip
        return out


def gather(reads: dict[str, HostRead]) -> FleetHealth:
    fleet = FleetHealth()
    for host, read in reads.items():
        if not read.reachable:
            fleet.hosts[host] = {"status": "unreachable", "error": read.error, "findings": []}
        else:
            fleet.hosts[host] = read.value
    return fleet
