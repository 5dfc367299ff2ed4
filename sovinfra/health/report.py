"""Rendering findings: the agent's JSON document and node_exporter textfile metrics (pure)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sovinfra.health.findings import SEVERITIES, Finding, worst
from sovinfra.health.readings import NodeReading


def status_of(findings: list[Finding]) -> str:
    return {"ok": "healthy", "warn": "degraded", "fail": "unhealthy"}[worst(findings)]


def document(node: NodeReading, findings: list[Finding], hostname: str) -> dict[str, Any]:
    return {
        "host": hostname,
        "status": status_of(findings),
        "driver_version": node.driver_version,
        "cuda_driver_version": node.cuda_driver_version,
        "gpu_count": len(node.gpus),
        "gpus": [
            {"index": g.index, "name": g.name, "serial": g.serial, "bus_id": g.bus_id, "uuid": g.uuid}
            for g in node.gpus
        ],
        "kernel_log_readable": node.kernel_log_readable,
        "findings": [asdict(f) for f in findings],
    }


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def prometheus(node: NodeReading, findings: list[Finding]) -> str:
    """node_exporter textfile format: HELP/TYPE once per metric, one sample per GPU/check."""
    lines = [
        "# HELP sovinfra_gpu_health_status Worst finding on this node (0 ok, 1 warn, 2 fail).",
        "# TYPE sovinfra_gpu_health_status gauge",
        f"sovinfra_gpu_health_status {SEVERITIES.index(worst(findings))}",
        "# HELP sovinfra_gpu_count GPUs visible through NVML.",
        "# TYPE sovinfra_gpu_count gauge",
        f"sovinfra_gpu_count {len(node.gpus)}",
        "# HELP sovinfra_gpu_check_severity Worst severity per GPU and check (0 ok, 1 warn, 2 fail).",
        "# TYPE sovinfra_gpu_check_severity gauge",
    ]
    per_check: dict[tuple[str, str, str], int] = {}
    for f in findings:
        key = (f.check, f.serial or "", f.bus_id or "")
        per_check[key] = max(per_check.get(key, 0), SEVERITIES.index(f.severity))
    for (check, serial, bus), level in sorted(per_check.items()):
        lines.append(
            f'sovinfra_gpu_check_severity{{check="{_label(check)}",serial="{_label(serial)}",'
            f'bus_id="{_label(bus)}"}} {level}'
        )
    gauges = (
        ("temperature_celsius", "GPU temperature.", "temperature_c"),
        ("power_watts", "GPU power draw.", "power_w"),
        (
            "ecc_volatile_uncorrected_errors",
            "Uncorrectable ECC errors since boot.",
            "ecc_volatile_uncorrected",
        ),
        (
            "remapped_rows_uncorrectable",
            "Rows remapped for uncorrectable errors.",
            "remapped_rows_uncorrectable",
        ),
    )
    for name, help_text, attr in gauges:
        samples = [(g, getattr(g, attr)) for g in node.gpus if getattr(g, attr) is not None]
        if not samples:
            continue
        lines += [f"# HELP sovinfra_gpu_{name} {help_text}", f"# TYPE sovinfra_gpu_{name} gauge"]
        for g, value in samples:
            lines.append(
                f'sovinfra_gpu_{name}{{gpu="{g.index}",serial="{_label(g.serial or "")}",'
                f'bus_id="{_label(g.bus_id)}"}} {value}'
            )
    return "\n".join(lines) + "\n"
