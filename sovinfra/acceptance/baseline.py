"""A run compared with the accepted baseline: per GPU by serial, per endpoint and concurrency (pure)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from sovinfra.acceptance.records import Record
from sovinfra.errors import UserError
from sovinfra.inventory.model import Inventory, host_vars, var_file

STAGE = "baseline"
VAR = "acceptance_tolerances"  # the inventory variable a group or host sets its own in


def _defaults() -> dict[str, float]:
    text = resources.files("sovinfra.acceptance").joinpath("tolerances.yml").read_text()
    return {str(k): float(v) for k, v in yaml.safe_load(text).items()}


def _over(base: dict[str, float], given: object, where: str) -> dict[str, float]:
    """`base` with the tolerances `given` names over it; `where` (a file, or a file and key) starts errors."""
    if not isinstance(given, dict):
        raise UserError(f"{where}: must be a mapping of {', '.join(sorted(base))} to percentages")
    out = dict(base)
    for key, value in given.items():
        if key not in base:
            raise UserError(f"{where}: {key}: unknown tolerance (known: {', '.join(sorted(base))})")
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise UserError(f"{where}: {key}: must be a percentage >= 0, not {value!r}")
        out[key] = float(value)
    return out


def _read(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: cannot read tolerances ({exc})") from exc


def tolerances(override: Path | None = None) -> dict[str, float]:
    """How far a measurement may move from its baseline before it fails, in percent: tolerances.yml (data,
    not code), with a file's over it (keys it names win; an unknown key or a value that is not a
    non-negative number is an error naming the file and key)."""
    return _defaults() if override is None else _over(_defaults(), _read(override), str(override))


def per_host(inv: Inventory, override: Path | None = None) -> dict[str, dict[str, float]]:
    """Each host's tolerances: the defaults, then the inventory's `acceptance_tolerances` it sees (a group's
    or its own: a site's noisier nodes may be judged more loosely), then the --tolerances file over all.
    Every value is checked here, before any host is touched."""
    forced = None
    if override is not None:
        tolerances(override)  # the file checked, named in any error, before any host's
        forced = _read(override)
    out = {}
    for host in inv.hosts:
        base = _defaults()
        given = host_vars(inv, host).get(VAR)
        if given is not None:
            base = _over(base, given, f"{var_file(inv, host, VAR)}: {VAR} (host {host})")
        out[host] = base if override is None else _over(base, forced, str(override))
    return out


def fingerprint_changes(now: dict[str, Any], then: dict[str, Any]) -> dict[str, str]:
    """Host -> what changed in what the run stood on (driver, CUDA, kernel, engines): not comparable there.
    The site endpoint of a model is served by every node with that model: `site:MODEL` -> what moved on
    them, so it is not comparable either when one of them moved."""
    out = {}
    for host in sorted(set(now) & set(then)):
        moved = [
            f"{k} {then[host].get(k)} -> {now[host].get(k)}"
            for k in sorted(set(now[host]) | set(then[host]))
            if now[host].get(k) != then[host].get(k)
        ]
        if moved:
            out[host] = ", ".join(moved)
    behind: dict[str, list[str]] = {}
    for host, what in list(out.items()):
        for key, model in sorted(now[host].items()):
            if key.startswith("endpoint ") and not key.startswith("endpoint site:"):
                behind.setdefault(f"site:{model}", []).append(f"{host}: {what}")
    return {**out, **{site: "; ".join(sorted(set(hosts))) for site, hosts in behind.items()}}


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


def _gpu_note(run: str, about: Record, status: str, message: str, action: str) -> Record:
    """A comparison record about the GPU `about` names."""
    return Record(
        run,
        STAGE,
        "gpu identity",
        about.host,
        status,
        message,
        action,
        about.gpu_uuid,
        about.gpu_serial,
        about.bus_id,
    )


def _measure_note(run: str, about: Record, status: str, message: str, **fields: Any) -> Record:
    """A comparison record about the endpoint measurement `about` is (its value and unit unless given)."""
    given = {"value": about.value, "unit": about.unit, **fields}
    return Record(run, STAGE, about.check, about.host, status, message, endpoint=about.endpoint, **given)


def _site(r: Record) -> str:
    """`site:MODEL` for a record about the site endpoint (its endpoint is site:MODEL@cN), else ""."""
    return r.endpoint.split("@")[0] if r.endpoint.startswith("site:") else ""


def _worse_pct(check: str, now: float, then: float) -> float:
    """How much worse in percent (positive = worse): higher is worse for a latency, lower for a throughput."""
    worse = (now - then) if check != "tokens/s" else (then - now)
    return round(worse / then * 100, 1) if then else 0.0


def compare(
    run: str,
    current: list[Record],
    baseline: list[Record],
    changed: dict[str, str],
    tolerances: dict[str, dict[str, float]],
) -> list[Record]:
    """Records of the comparison: missing GPUs fail, new ones are new, metrics within their host's
    tolerance (`tolerances` by host)."""
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
            _gpu_note(
                run,
                r,
                "fail",
                f"GPU {ident} of the baseline is missing{swapped}",
                "find out why the GPU is gone or was swapped; accept a new baseline once intended",
            )
        )
    for (host, ident), r in sorted(now_gpus.items()):
        if (host, ident) not in then_gpus:
            out.append(
                _gpu_note(
                    run,
                    r,
                    "warn",
                    f"new GPU {ident}, no baseline",
                    "accept a run as baseline to judge it from now on",
                )
            )
    now_measures, then_measures = _measures(current), _measures(baseline)
    for key, r in sorted(now_measures.items()):
        old = then_measures.get(key)
        if old is None:
            out.append(_measure_note(run, r, "warn", "new, no baseline"))
        elif stood := changed.get(r.host) or changed.get(_site(r)):
            out.append(_measure_note(run, r, "skipped", f"not comparable: {stood}"))
        else:
            assert isinstance(r.value, int | float) and isinstance(old.value, int | float)
            pct = _worse_pct(r.check, r.value, old.value)
            limit = tolerances[r.host]["ttft_p50_pct" if r.check != "tokens/s" else "tokens_per_s_pct"]
            moved = f"{old.value:g} -> {r.value:g} {r.unit}" + (f" ({pct:+g}% worse)" if pct > 0 else "")
            slower = "slower than its baseline: look at the node's load, clocks and engine flags"
            out.append(
                _measure_note(
                    run,
                    r,
                    "fail" if pct > limit else "pass",
                    moved,
                    action=slower if pct > limit else "",
                    value=pct,
                    unit="% worse",
                    threshold=limit,
                    threshold_source="acceptance tolerances",
                )
            )
    for key, old in sorted(then_measures.items()):
        if key[0] in hosts and key not in now_measures:
            out.append(_measure_note(run, old, "fail", "measured in the baseline, not in this run"))
    return out
