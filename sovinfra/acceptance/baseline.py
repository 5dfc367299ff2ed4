"""A run compared with the accepted baseline: per GPU by serial, per endpoint and concurrency (pure)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from sovinfra.acceptance.records import Record
from sovinfra.errors import UserError

STAGE = "baseline"


def tolerances(override: Path | None = None) -> dict[str, float]:
    """How far a measurement may move from its baseline before it fails, in percent: tolerances.yml (data,
    not code), with a site's own file over it (keys it names win; an unknown key or a value that is not a
    non-negative number is an error naming the file and key)."""
    text = resources.files("sovinfra.acceptance").joinpath("tolerances.yml").read_text()
    out = {str(k): float(v) for k, v in yaml.safe_load(text).items()}
    if override is None:
        return out
    try:
        given = yaml.safe_load(override.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"{override}: cannot read tolerances ({exc})") from exc
    if not isinstance(given, dict):
        raise UserError(f"{override}: must be a mapping of {', '.join(sorted(out))} to percentages")
    for key, value in given.items():
        if key not in out:
            raise UserError(f"{override}: {key}: unknown tolerance (known: {', '.join(sorted(out))})")
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise UserError(f"{override}: {key}: must be a percentage >= 0, not {value!r}")
        out[key] = float(value)
    return out


def fingerprint_changes(now: dict[str, Any], then: dict[str, Any]) -> dict[str, str]:
    """Host -> what changed in what the run stood on (driver, CUDA, kernel, engines): not comparable there."""
    out = {}
    for host in sorted(set(now) & set(then)):
        moved = [
            f"{k} {then[host].get(k)} -> {now[host].get(k)}"
            for k in sorted(set(now[host]) | set(then[host]))
            if now[host].get(k) != then[host].get(k)
        ]
        if moved:
            out[host] = ", ".join(moved)
    return out


def _gpus(records: list[Record]) -> dict[tuple[str, str], Record]:
    return {
        (r.host, r.gpu_serial or r.gpu_uuid): r
        for r in records
        if r.stage == "health start" and r.check == "gpu present"
    }


def _measures(records: list[Record]) -> dict[tuple[str, str, str], Record]:
    return {
        (r.host, r.endpoint, r.check): r
        for r in records
        if r.stage == "endpoints" and r.check in ("ttft p50", "tokens/s") and isinstance(r.value, int | float)
    }


def compare(
    run: str,
    current: list[Record],
    baseline: list[Record],
    changed: dict[str, str],
    tolerances: dict[str, float],
) -> list[Record]:
    """Records of the comparison: missing GPUs fail, new ones are new, metrics within their tolerance."""
    out = []
    hosts = {r.host for r in current}
    now_gpus, then_gpus = _gpus(current), _gpus(baseline)
    for (host, ident), r in sorted(then_gpus.items()):
        if host not in hosts or (host, ident) in now_gpus:
            continue
        holder = next(
            (n for (h, _), n in now_gpus.items() if h == host and r.bus_id and n.bus_id == r.bus_id), None
        )
        swapped = f"; bus {r.bus_id} now holds {holder.gpu_serial or holder.gpu_uuid}" if holder else ""
        out.append(
            Record(
                run,
                STAGE,
                "gpu identity",
                host,
                "fail",
                f"GPU {ident} of the baseline is missing{swapped}",
                "find out why the GPU is gone or was swapped; accept a new baseline once intended",
                r.gpu_uuid,
                r.gpu_serial,
                r.bus_id,
            )
        )
    for (host, ident), r in sorted(now_gpus.items()):
        if (host, ident) not in then_gpus:
            out.append(
                Record(
                    run,
                    STAGE,
                    "gpu identity",
                    host,
                    "warn",
                    f"new GPU {ident}, no baseline",
                    "accept a run as baseline to judge it from now on",
                    r.gpu_uuid,
                    r.gpu_serial,
                    r.bus_id,
                )
            )
    then_measures = _measures(baseline)
    for key, r in sorted(_measures(current).items()):
        host, endpoint, check = key
        old = then_measures.get(key)
        if old is None:
            out.append(
                Record(
                    run,
                    STAGE,
                    check,
                    host,
                    "warn",
                    "new, no baseline",
                    endpoint=endpoint,
                    value=r.value,
                    unit=r.unit,
                )
            )
            continue
        if host in changed:
            out.append(
                Record(
                    run,
                    STAGE,
                    check,
                    host,
                    "skipped",
                    f"not comparable: {changed[host]}",
                    endpoint=endpoint,
                    value=r.value,
                    unit=r.unit,
                )
            )
            continue
        assert isinstance(r.value, int | float) and isinstance(old.value, int | float)
        # Worse is higher for a latency, lower for a throughput: change in percent, positive = worse.
        worse = (r.value - old.value) if check != "tokens/s" else (old.value - r.value)
        pct = round(worse / old.value * 100, 1) if old.value else 0.0
        limit = tolerances["ttft_p50_pct" if check != "tokens/s" else "tokens_per_s_pct"]
        status = "fail" if pct > limit else "pass"
        out.append(
            Record(
                run,
                STAGE,
                check,
                host,
                status,
                f"{old.value:g} -> {r.value:g} {r.unit} ({pct:+g}% worse)"
                if pct > 0
                else f"{old.value:g} -> {r.value:g} {r.unit}",
                "slower than its baseline: look at the node's load, clocks and engine flags"
                if status == "fail"
                else "",
                endpoint=endpoint,
                value=pct,
                unit="% worse",
                threshold=limit,
                threshold_source="acceptance tolerances",
            )
        )
    for key, old in sorted(then_measures.items()):
        if key[0] in hosts and key not in _measures(current):
            out.append(
                Record(
                    run,
                    STAGE,
                    key[2],
                    key[0],
                    "fail",
                    "measured in the baseline, not in this run",
                    endpoint=key[1],
                    value=old.value,
                    unit=old.unit,
                )
            )
    return out
