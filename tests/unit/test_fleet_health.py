"""Judging and tabulating the agents' reports (pure)."""

from __future__ import annotations

from sovinfra.fleet.connection import HostRead
from sovinfra.fleet.health import gather, parse_agent_output


def test_parse_agent_output() -> None:
    assert parse_agent_output([])["status"] == "agent_missing"
    assert parse_agent_output(["sh: sovinfra-health: not found"])["status"] == "bad_output"
    assert parse_agent_output(['{"status": "healthy", "findings": []}'])["status"] == "healthy"


def test_unreachable_and_failing_hosts_fail_degraded_passes() -> None:
    finding = {
        "check": "ecc",
        "severity": "fail",
        "message": "4 uncorrectable",
        "gpu_index": 2,
        "serial": "S2",
        "bus_id": "0000:38:00.0",
    }
    fleet = gather({
        "a": HostRead("a", True, {"status": "healthy", "gpu_count": 8, "findings": []}),
        "b": HostRead("b", True, {"status": "unhealthy", "findings": [finding]}),
        "c": HostRead("c", False, error="could not connect over ssh"),
        "d": HostRead("d", True, {"status": "degraded", "findings": [{**finding, "severity": "warn"}]}),
        "e": HostRead("e", True, {"status": "cannot_run", "error": "no NVIDIA driver", "findings": []}),
    })  # fmt: skip
    assert fleet.failed_hosts == ["b", "c", "e"]
    rows = {(r.host, r.gpu, r.severity) for r in fleet.rows()}
    assert ("b", "2", "fail") in rows and ("d", "2", "warn") in rows
    assert any(r.host == "c" and r.status == "unreachable" for r in fleet.rows())
