"""`dcgmi diag -j` documents read and judged (pure): DCGM 4.x ("DCGM Diagnostic", results per entity with
entity_group/entity_id, a test_summary per test) and 3.x ("DCGM GPU Diagnostic", results per gpu_id).

What dcgmi printed is parsed as JSON, never scraped: a document that is not one of these shapes is an
error naming what is wrong, not a pass.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sovinfra.acceptance.records import Record

STAGE = "gpu diagnostics"
# The run level per acceptance profile: 1 (seconds, deployment checks), 3 (stress: tens of minutes).
LEVELS = {"quick": 1, "full": 3}
_STATUS = {"pass": "pass", "fail": "fail", "warn": "warn", "skip": "skipped", "skipped": "skipped"}
NOT_INSTALLED = "DCGMI-NOT-INSTALLED"


class DiagError(ValueError):
    """What dcgmi printed is not a diagnostic document."""


@dataclass(frozen=True)
class DiagResult:
    category: str
    test: str
    gpu: int | None  # the NVML index (DCGM's GPU entity id); None for a result about the node
    status: str  # DCGM's word: Pass, Fail, Warn, Skip
    warnings: tuple[str, ...] = ()


def _warnings(result: dict[str, Any]) -> tuple[str, ...]:
    out = []
    for w in result.get("warnings") or []:
        text = w.get("warning") if isinstance(w, dict) else w
        if isinstance(text, str) and text:
            out.append(text.strip())
    return tuple(out)


def _gpus(result: dict[str, Any]) -> list[int | None]:
    """The GPUs a result is about: 4.x entity_id (GPU group only), 3.x gpu_id / gpu_ids ("0" or "0,1")."""
    if "entity_id" in result:
        if result.get("entity_group", "GPU") != "GPU":
            return []
        return [int(result["entity_id"])]
    ids = result.get("gpu_id", result.get("gpu_ids"))
    if ids is None or ids == "":
        return [None]
    return [int(i) for i in str(ids).split(",") if i.strip()]


def parse(text: str) -> tuple[str, list[DiagResult]]:
    """(DCGM version or "", results) of a `dcgmi diag -j` document; DiagError names what is wrong."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        head = text.strip().splitlines()[0][:200] if text.strip() else "(nothing)"
        raise DiagError(f"not JSON ({exc.msg}): {head}") from exc
    if not isinstance(doc, dict):
        raise DiagError("not a JSON object")
    root = doc.get("DCGM Diagnostic", doc.get("DCGM GPU Diagnostic"))
    if not isinstance(root, dict):
        raise DiagError('no "DCGM Diagnostic" (4.x) or "DCGM GPU Diagnostic" (3.x) object')
    if root.get("runtime_error"):
        raise DiagError(f"dcgmi: {root['runtime_error']}")
    categories = root.get("test_categories")
    if not isinstance(categories, list) or not categories:
        raise DiagError("test_categories: missing or empty")
    version = (doc.get("metadata") or {}).get("version") or root.get("version") or ""
    out = []
    for c in categories:
        if not isinstance(c, dict) or not isinstance(c.get("tests"), list):
            raise DiagError("test_categories: an entry without tests")
        for t in c["tests"]:
            if (
                not isinstance(t, dict)
                or not isinstance(t.get("name"), str)
                or not isinstance(t.get("results"), list)
            ):
                raise DiagError(f"{c.get('category')}: a test without a name or results")
            for r in t["results"]:
                if not isinstance(r, dict) or not isinstance(r.get("status"), str):
                    raise DiagError(f"{t['name']}: a result without a status")
                try:
                    gpus = _gpus(r)
                except (TypeError, ValueError) as exc:
                    raise DiagError(f"{t['name']}: a GPU id that is not a number ({exc})") from exc
                for gpu in gpus:
                    out.append(
                        DiagResult(str(c.get("category", "")), t["name"], gpu, r["status"], _warnings(r))
                    )
    return str(version), out


def records(run: str, host: str, output: str, gpus: dict[int, dict[str, str]]) -> list[Record]:
    """One host's dcgmi output as records: one per test and GPU (identity from the health agent's report,
    by index), or one record saying why there is no measurement."""
    if output.strip() == NOT_INSTALLED:
        return [
            Record(
                run,
                STAGE,
                "dcgm",
                host,
                "not-run",
                "dcgmi is not installed on the node",
                "converge the dcgm role (dcgm_enabled) so the node can run NVIDIA's diagnostics",
            )
        ]
    try:
        version, results = parse(output)
    except DiagError as exc:
        return [Record(run, STAGE, "dcgm", host, "error", str(exc), "run `dcgmi diag -r 1` on the node")]
    if not results:
        return [Record(run, STAGE, "dcgm", host, "not-run", "dcgmi ran no test")]
    out = []
    for r in results:
        ids = gpus.get(r.gpu, {}) if r.gpu is not None else {}
        status = _STATUS.get(r.status.lower(), "error")
        message = "; ".join(r.warnings) or (f"DCGM {version}" if version else "")
        action = "drain the node and run `dcgmi diag -r 3` on it; replace the GPU if it fails again"
        out.append(
            Record(
                run,
                STAGE,
                f"dcgm {r.test}",
                host,
                status,
                message,
                action if status == "fail" else "",
                ids.get("uuid", ""),
                ids.get("serial", ""),
                ids.get("bus_id", ""),
            )
        )
    return out
