"""Acceptance records: one JSON object per result, and the judgements made of them (pure).

A record is about one thing: a host, a GPU (by UUID and serial, never by index alone: a lost GPU shifts
indices), or an endpoint at one concurrency. Its status is one of STATUSES; anything but pass, warn and
skipped fails the run, a measurement that was not taken ("not-run") included.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

STATUSES = ("pass", "warn", "fail", "skipped", "not-run", "error")
FAILING = frozenset({"fail", "not-run", "error"})
# How bad a status is, for "worse than before" and "the worst of several": anything failing ranks alike.
RANK = {"pass": 0, "skipped": 0, "warn": 1, "fail": 2, "not-run": 2, "error": 2}
# The health agent's severities and host statuses, as record statuses.
_SEVERITY = {"ok": "pass", "warn": "warn", "fail": "fail"}
_HOST_STATUS = {
    "unreachable": "error",
    "cannot_run": "error",
    "bad_output": "error",
    "agent_missing": "not-run",
}


class RecordError(ValueError):
    """A record that is not one: names the field."""


@dataclass(frozen=True)
class Record:
    run: str
    stage: str
    check: str
    host: str
    status: str
    message: str = ""
    action: str = ""
    gpu_uuid: str = ""
    gpu_serial: str = ""
    bus_id: str = ""
    endpoint: str = ""
    value: float | str | None = None
    unit: str = ""
    threshold: float | None = None
    threshold_source: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def subject(self) -> str:
        """What the record is about, as a person reads it."""
        if self.endpoint:
            return f"{self.host}/{self.endpoint}"
        if self.gpu_serial or self.gpu_uuid:
            return f"{self.host} GPU {self.gpu_serial or self.gpu_uuid}"
        return self.host


_FIELDS = {f.name: f for f in fields(Record)}
_REQUIRED = ("run", "stage", "check", "host", "status")


def from_json(doc: object, where: str) -> Record:
    """A record read back from a run directory; RecordError names the field that is wrong."""
    if not isinstance(doc, dict):
        raise RecordError(f"{where}: not a JSON object")
    unknown = sorted(set(doc) - set(_FIELDS))
    if unknown:
        raise RecordError(f"{where}: unknown field {unknown[0]!r}")
    for name in _REQUIRED:
        if not isinstance(doc.get(name), str) or not doc[name]:
            raise RecordError(f"{where}: {name} must be a non-empty string")
    if doc["status"] not in STATUSES:
        raise RecordError(f"{where}: status {doc['status']!r} is not one of {', '.join(STATUSES)}")
    for name in ("value", "threshold"):
        value = doc.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float | str)):
            raise RecordError(f"{where}: {name} must be a number, text or null")
    if isinstance(doc.get("threshold"), str):
        raise RecordError(f"{where}: threshold must be a number or null")
    for name in set(_FIELDS) - {"value", "threshold", *_REQUIRED}:
        if name in doc and not isinstance(doc[name], str):
            raise RecordError(f"{where}: {name} must be a string")
    return Record(**doc)


def verdict(records: list[Record]) -> str:
    """pass, warn or fail for a whole run (or host): no records at all is a failure, not a pass."""
    if not records or any(r.status in FAILING for r in records):
        return "fail"
    return "warn" if any(r.status == "warn" for r in records) else "pass"


def gpus_of(doc: dict[str, Any]) -> dict[int, dict[str, str]]:
    """The agent report's GPUs by index: identity for findings that carry only an index."""
    out = {}
    for gpu in doc.get("gpus") or []:
        if isinstance(gpu, dict) and isinstance(gpu.get("index"), int):
            out[gpu["index"]] = {k: str(gpu.get(k) or "") for k in ("uuid", "serial", "bus_id", "name")}
    return out


def from_health(run: str, stage: str, host: str, doc: dict[str, Any]) -> list[Record]:
    """The health agent's report on one host as records: one per finding, one for each GPU it saw."""
    status = str(doc.get("status", ""))
    if status in _HOST_STATUS:
        return [Record(run, stage, "agent", host, _HOST_STATUS[status], str(doc.get("error") or status))]
    gpus = gpus_of(doc)
    out = [
        Record(
            run,
            stage,
            "gpu present",
            host,
            "pass",
            str(g.get("name") or ""),
            gpu_uuid=ids["uuid"],
            gpu_serial=ids["serial"],
            bus_id=ids["bus_id"],
        )
        for g in doc.get("gpus") or []
        if isinstance(g, dict) and (ids := gpus.get(g.get("index", -1)))
    ]
    for f in doc.get("findings") or []:
        ids = gpus.get(f.get("gpu_index", -1), {}) if f.get("gpu_index") is not None else {}
        out.append(
            Record(
                run,
                stage,
                str(f.get("check", "")),
                host,
                _SEVERITY.get(str(f.get("severity")), "error"),
                str(f.get("message", "")),
                str(f.get("action") or ""),
                gpu_uuid=ids.get("uuid", ""),
                gpu_serial=str(f.get("serial") or ids.get("serial", "")),
                bus_id=str(f.get("bus_id") or ids.get("bus_id", "")),
            )
        )
    if not out:
        out.append(Record(run, stage, "agent", host, "not-run", "the agent reported no GPU and no finding"))
    return out


def health_change(run: str, start: list[Record], end: list[Record]) -> list[Record]:
    """The end-of-run health judged as the change since the start: what is worse now, per GPU and check."""

    def key(r: Record) -> tuple[str, str, str]:
        return (r.host, r.gpu_serial or r.gpu_uuid or r.bus_id, r.check)

    before: dict[tuple[str, str, str], int] = {}
    for r in start:
        before[key(r)] = max(before.get(key(r), 0), RANK[r.status])
    out = []
    for r in end:
        was = before.get(key(r))
        if r.check in ("gpu present", "agent"):  # GPUs are judged below; a host's reach is health end's own
            continue
        if RANK[r.status] > (was or 0):
            out.append(
                Record(
                    run,
                    "health change",
                    r.check,
                    r.host,
                    r.status,
                    f"new since the start of the run: {r.message}",
                    r.action,
                    r.gpu_uuid,
                    r.gpu_serial,
                    r.bus_id,
                )
            )
    seen = {key(r)[:2] for r in end if r.check == "gpu present"}
    # Only a host the end read reached can have lost a GPU (an unreachable one is its own error record).
    read = {r.host for r in end if r.check != "agent"}
    for r in start:
        if r.check == "gpu present" and key(r)[:2] not in seen and r.host in read:
            out.append(
                Record(
                    run,
                    "health change",
                    "gpu present",
                    r.host,
                    "fail",
                    "present at the start of the run, gone at its end",
                    "reseat or replace the GPU",
                    r.gpu_uuid,
                    r.gpu_serial,
                    r.bus_id,
                )
            )
    return out


def from_load(run: str, result: dict[str, Any]) -> list[Record]:
    """One endpoint at one concurrency (`loadtest.check.check`'s result): TTFT, TPOT, tokens/s, verdict."""
    endpoint = f"{result['service']}@c{result['concurrency']}"
    host = str(result["host"])
    summary = result.get("summary")
    slo = result.get("slo") or {}
    if not summary:
        reasons = "; ".join(result.get("reasons") or []) or "no measurement"
        return [Record(run, "endpoints", "slo", host, "error", reasons, endpoint=endpoint)]
    out = []
    measures = (
        ("ttft p50", "ttft_ms"),
        ("ttft p99", "ttft_ms"),
        ("tpot p50", "tpot_ms"),
        *((f"itl p{p}", "itl_ms") for p in (50, 90, 99)),
    )
    for name, metric in measures:
        pct = name.split()[1]
        value = (summary.get(metric) or {}).get(pct)
        limit = slo.get(metric) if pct == "p99" else None
        status = "not-run" if value is None else "fail" if limit is not None and value > limit else "pass"
        out.append(
            Record(
                run,
                "endpoints",
                name,
                host,
                status,
                "not measured"
                if value is None
                else f"{value:g} ms > SLO {limit:g} ms"
                if status == "fail"
                else "",
                "fewer streams per replica, more replicas, or a faster engine setting"
                if status == "fail"
                else "",
                endpoint=endpoint,
                value=value,
                unit="ms",
                threshold=limit,
                threshold_source="inference_services slo" if limit is not None else "",
            )
        )
    tps = summary.get("output_tokens_per_s")
    out.append(
        Record(
            run,
            "endpoints",
            "tokens/s",
            host,
            "pass" if tps else "not-run",
            endpoint=endpoint,
            value=tps,
            unit="tok/s",
        )
    )
    failed = result.get("reasons") or []
    out.append(
        Record(
            run,
            "endpoints",
            "slo",
            host,
            "fail" if failed else "pass",
            "; ".join(failed),
            endpoint=endpoint,
            value=summary.get("goodput_requests"),
            unit="requests met the SLO",
        )
    )
    return out
