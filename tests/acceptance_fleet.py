"""A synthetic fleet's acceptance run (records through the same functions a real run uses): the report's
browser test and its size benchmark."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sovinfra.acceptance import bandwidth
from sovinfra.acceptance.records import Record, from_health, from_load, gpus_of, verdict

BAD_HOST, BAD_SERIAL = "node07", "1650924007005"
# nvbandwidth's and all_reduce_perf's outputs for an 8-GPU HGX node, in the tools' formats.
BANDWIDTH = Path(__file__).parent / "fixtures" / "bandwidth"


# A real H100 agent report (device run, serials redacted): every check the agent makes on one GPU.
REAL = json.loads(
    (Path(__file__).parent / "fixtures" / "real_nvml" / "h100_sxm_vm_idle_health.json").read_text()
)


def agent_doc(host_n: int, gpus: int, fail_serial: str = "") -> dict[str, Any]:
    """The real report's findings for each of `gpus` GPUs (all ok), an XID 79 on `fail_serial`."""
    listed = [
        {"index": i, "name": "NVIDIA H200", "serial": f"16509240{host_n:02d}{i:03d}",
         "bus_id": f"00000000:{0x19 + i * 0x20:02X}:00.0", "uuid": f"GPU-{host_n:02d}{i:02d}"}
        for i in range(gpus)
    ]  # fmt: skip
    findings = []
    for g in listed:
        for f in REAL["findings"]:
            finding = {
                **f,
                "severity": "ok",
                "gpu_index": g["index"],
                "serial": g["serial"],
                "bus_id": g["bus_id"],
            }
            if f["check"] == "xid" and g["serial"] == fail_serial:
                finding |= {"severity": "fail", "message": "Xid 79: GPU has fallen off the bus",
                            "action": "drain the node, reseat or replace the GPU"}  # fmt: skip
            findings.append(finding)
    return {"status": "unhealthy" if fail_serial else "healthy", "gpus": listed, "findings": findings}


def fleet(
    nodes: int = 16, gpus: int = 8, run: str = "20261203T060000Z"
) -> tuple[dict[str, Any], list[Record]]:
    records: list[Record] = []
    for n in range(1, nodes + 1):
        host = f"node{n:02d}"
        bad = BAD_SERIAL if host == BAD_HOST else ""
        doc = agent_doc(n, gpus, bad)
        records += from_health(run, "health start", host, doc)
        if gpus == 8:  # the tools' outputs are of 8 GPUs
            floors = bandwidth.floors()
            nvb = (BANDWIDTH / "nvbandwidth-8x-h100.json").read_text()
            ring = (BANDWIDTH / "all_reduce_perf-8x-h100.txt").read_text()
            records += bandwidth.nvbandwidth_records(run, host, nvb, gpus_of(doc), floors)
            models = [g["name"] for _, g in sorted(gpus_of(doc).items())]
            records += bandwidth.all_reduce_records(run, host, ring, models, floors)
        for c in (2, 4, 8):
            result: dict[str, Any] = {
                "host": host,
                "service": "llama",
                "concurrency": c,
                "slo": {"ttft_ms": 500.0},
                "summary": {
                    "ttft_ms": {"p50": 40.0 * c, "p99": 55.0 * c},
                    "tpot_ms": {"p50": 12.0},
                    "itl_ms": {"p50": 11.0 + c, "p90": 14.0 + 2 * c, "p99": 20.0 + 4 * c},
                    "output_tokens_per_s": 90.0 * c**0.8,
                    "goodput_requests": 16,
                },
                "reasons": [],
            }
            records += from_load(run, result)
    summary = {
        "run": run,
        "verdict": verdict(records),
        "profile": "quick",
        "inventory": "synthetic",
        "started": "2026-12-03T06:00:00+00:00",
        "seconds": 300.0,
        "baseline": None,
        "fingerprint": {},
    }
    return summary, records
