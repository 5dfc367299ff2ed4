"""From per-request timings to the summary (pure). Definitions: ../shared/DESIGN.md "Load tests".

TTFT = time to the first chunk carrying a non-empty token (a role-only chunk does not count);
ITL = gaps between token chunks after the first; TPOT = (E2E - TTFT) / (output tokens - 1);
goodput = requests meeting every SLO given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

PERCENTILES = (50, 90, 95, 99)


@dataclass
class RequestRecord:
    start: float  # monotonic seconds, when the request was sent
    ok: bool = False
    error: str | None = None  # class: http_<code>, cut_stream, malformed_sse, timeout, connect
    ttft: float | None = None
    e2e: float | None = None
    itl: list[float] = field(default_factory=list)
    chunks_with_tokens: int = 0
    output_tokens: int | None = None  # from the server's usage
    prompt_tokens: int | None = None
    scheduled: float | None = None  # when the load shape wanted it sent (rate mode)
    warmup: bool = False

    @property
    def tokens(self) -> int:
        return self.output_tokens if self.output_tokens is not None else self.chunks_with_tokens

    @property
    def tpot(self) -> float | None:
        if self.e2e is None or self.ttft is None or self.tokens < 2:
            return None
        return (self.e2e - self.ttft) / (self.tokens - 1)


@dataclass(frozen=True)
class SLO:
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None

    def met(self, r: RequestRecord) -> bool:
        checks = ((self.ttft_ms, r.ttft), (self.tpot_ms, r.tpot), (self.e2e_ms, r.e2e))
        return r.ok and all(limit is None or (v is not None and v * 1000 <= limit) for limit, v in checks)


def percentile(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def distribution_ms(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, **{f"p{p}": None for p in PERCENTILES}}
    out: dict[str, float | None] = {"mean": round(sum(values) / len(values) * 1000, 3)}
    for p in PERCENTILES:
        out[f"p{p}"] = round(percentile(values, p) * 1000, 3)
    return out


def summarize(records: list[RequestRecord], wall_s: float, slo: SLO) -> dict[str, Any]:
    measured = [r for r in records if not r.warmup]
    ok = [r for r in measured if r.ok]
    errors: dict[str, int] = {}
    for r in measured:
        if not r.ok:
            errors[r.error or "unknown"] = errors.get(r.error or "unknown", 0) + 1
    mismatched = [r for r in ok if r.output_tokens is not None and r.output_tokens != r.chunks_with_tokens]
    tokens = sum(r.tokens for r in ok)
    return {
        "requests": len(measured),
        "requests_ok": len(ok),
        "errors": errors,
        "ttft_ms": distribution_ms([r.ttft for r in ok if r.ttft is not None]),
        "itl_ms": distribution_ms([gap for r in ok for gap in r.itl]),
        "tpot_ms": distribution_ms([t for r in ok if (t := r.tpot) is not None]),
        "e2e_ms": distribution_ms([r.e2e for r in ok if r.e2e is not None]),
        "output_tokens": tokens,
        "output_tokens_per_s": round(tokens / wall_s, 2) if wall_s > 0 else None,
        "requests_per_s": round(len(ok) / wall_s, 3) if wall_s > 0 else None,
        "goodput_requests": sum(1 for r in ok if slo.met(r)),
        "goodput_per_s": round(sum(1 for r in ok if slo.met(r)) / wall_s, 3) if wall_s > 0 else None,
        "usage_mismatches": len(mismatched),
        "usage_missing": sum(1 for r in ok if r.output_tokens is None),
    }


def compare(current: dict[str, Any], baseline: dict[str, Any], threshold_pct: float) -> dict[str, Any]:
    """Regression % per metric (positive = worse); any beyond the threshold fails."""
    rows = {}
    for metric in ("ttft_ms", "itl_ms", "tpot_ms", "e2e_ms"):
        now, then = current.get(metric, {}).get("p50"), baseline.get(metric, {}).get("p50")
        if now is not None and then:
            rows[f"{metric}.p50"] = round((now - then) / then * 100, 2)
    now_tps, then_tps = current.get("output_tokens_per_s"), baseline.get("output_tokens_per_s")
    if now_tps is not None and then_tps:
        rows["output_tokens_per_s"] = round((then_tps - now_tps) / then_tps * 100, 2)
    failed = sorted(k for k, v in rows.items() if v > threshold_pct)
    return {"regression_pct": rows, "threshold_pct": threshold_pct, "failed": failed}


def verdict(summary: dict[str, Any], slo: SLO, min_goodput: float, max_error_rate: float) -> list[str]:
    """Why a run fails its targets (empty: it passes). Goodput is the share of requests meeting every SLO."""
    reasons = []
    total = summary["requests"]
    if not summary["valid"]:
        reasons.append("client could not keep up: " + "; ".join(summary["invalid_reasons"]))
    if total == 0:
        return [*reasons, "no request completed inside the bounds"]
    failed = total - summary["requests_ok"]
    if failed > max_error_rate * total:
        tolerated = f"tolerated {max_error_rate:.0%}"
        reasons.append(f"{failed}/{total} requests failed {summary['errors']} ({tolerated})")
    if any(v is not None for v in (slo.ttft_ms, slo.tpot_ms, slo.e2e_ms)):
        share = summary["goodput_requests"] / total
        if share < min_goodput:
            worst = []
            for name, limit in (("ttft_ms", slo.ttft_ms), ("tpot_ms", slo.tpot_ms), ("e2e_ms", slo.e2e_ms)):
                p = summary[name]["p99"]
                if limit is not None and (p is None or p > limit):
                    worst.append(f"{name[:-3]} p99 {p} ms > {limit:g} ms")
            reasons.append(
                f"goodput {share:.0%} of requests met the SLO, needs {min_goodput:.0%}"
                + (f" ({', '.join(worst)})" if worst else "")
            )
    return reasons
