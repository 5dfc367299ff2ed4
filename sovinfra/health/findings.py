"""A finding: one check's verdict on one GPU (or the node), with what to do about it."""

from __future__ import annotations

from dataclasses import dataclass

SEVERITIES = ("ok", "warn", "fail")


@dataclass(frozen=True)
class Finding:
    check: str
    severity: str  # ok | warn | fail
    message: str
    action: str = ""
    gpu_index: int | None = None
    serial: str | None = None
    bus_id: str | None = None


def worst(findings: list[Finding]) -> str:
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    return max((f.severity for f in findings), key=rank.__getitem__, default="ok")
