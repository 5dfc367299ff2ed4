"""One acceptance run: stages in order, each under its own time budget and recorded even when it fails.

quick: facts (the run's fingerprint), passive GPU health at the start, NVIDIA's own diagnostics (DCGM,
`dcgmi diag -r 1`; full: `-r 3`), NVIDIA's bandwidth tests where the site provides them (nvbandwidth,
nccl-tests' all_reduce_perf) against per-model floors, every endpoint swept over concurrency, passive
health again at the end judged as the change since the start, then the comparison with the accepted
baseline. A stage cut at its budget is an error record; the run goes on.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sovinfra.acceptance import bandwidth, dcgm
from sovinfra.acceptance import baseline as baselines
from sovinfra.acceptance.records import Record, from_health, from_load, gpus_of, health_change, verdict
from sovinfra.inventory.model import Inventory
from sovinfra.loadtest.targets import Target

PROFILES = ("quick", "full")
# Seconds each stage may take before it is cut and recorded as an error.
BUDGETS = {
    "facts": 120.0,
    "health start": 300.0,
    dcgm.STAGE: 3600.0,
    bandwidth.STAGE: 1800.0,
    "endpoints": 1800.0,
    "health end": 300.0,
}
# Concurrency points of the sweep, as fractions of the endpoint's own load concurrency.
SWEEP = {"quick": (0.25, 0.5, 1.0), "full": (0.125, 0.25, 0.5, 0.75, 1.0, 1.5)}


@dataclass
class Run:
    id: str
    profile: str
    records: list[Record] = field(default_factory=list)
    raw: dict[str, bytes] = field(default_factory=dict)
    fingerprint: dict[str, dict[str, str]] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)


def sweep_points(concurrency: int, profile: str) -> list[int]:
    """The distinct concurrencies of a sweep, at least 1 each (pure)."""
    return sorted({max(1, round(concurrency * f)) for f in SWEEP[profile]})


def in_budget(
    name: str, budget_s: float, fn: Callable[[], list[Record]], run: str, hosts: list[str]
) -> list[Record]:
    """fn's records, or one error record per host when it raised or ran past its budget (the thread is left
    to finish on its own: a daemon, it never holds the run up)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["records"] = fn()
        except Exception as exc:  # any failure of a stage is recorded, the run goes on
            box["error"] = f"{type(exc).__name__}: {exc}"

    worker = threading.Thread(target=target, name=f"acceptance {name}", daemon=True)
    worker.start()
    worker.join(budget_s)
    if worker.is_alive():
        message, action = f"cut at its budget of {budget_s:g} s", "find out what hangs on the host; re-run"
    elif "error" in box:
        message, action = f"the stage failed: {box['error']}", ""
    else:
        return list(box["records"])
    return [Record(run, name, "stage", host, "error", message, action) for host in hosts]


def execute(
    run: Run,
    inv: Inventory,
    gpu_hosts: list[str],
    targets: list[Target],
    baseline: tuple[dict[str, Any], list[Record]] | None,
    tolerances: dict[str, dict[str, float]],
    floors: dict[str, dict[str, dict[str, bandwidth.Floor]]],
    log: Callable[[str], None],
    budgets: dict[str, float] | None = None,
) -> None:
    """Every stage of the profile, in order, into `run`."""
    from sovinfra.fleet import health as fleet_health
    from sovinfra.fleet.bandwidth import AllReduce, NvBandwidth
    from sovinfra.fleet.connection import read_all
    from sovinfra.fleet.dcgm import DcgmDiag
    from sovinfra.fleet.facts import NodeFacts
    from sovinfra.loadtest.check import check

    limits = {**BUDGETS, **(budgets or {})}
    every = sorted(set(gpu_hosts) | {t.host for t in targets})
    agent_docs: dict[str, dict[str, Any]] = {}  # health start's reports: GPU identity by index

    def stage(name: str, fn: Callable[[], list[Record]], hosts: list[str]) -> list[Record]:
        log(f"{name} ...")
        started = time.monotonic()
        got = in_budget(name, limits[name], fn, run.id, hosts)
        run.stage_seconds[name] = round(time.monotonic() - started, 2)
        run.records += got
        log(f"{name}: {verdict(got)} ({run.stage_seconds[name]} s)")
        return got

    def facts() -> list[Record]:
        reads = read_all(inv, every, NodeFacts)
        run.raw["facts.json"] = json.dumps(
            {h: r.value if r.reachable else {"error": r.error} for h, r in sorted(reads.items())}, indent=2
        ).encode()
        out = []
        for host, read in sorted(reads.items()):
            if not read.reachable:
                out.append(Record(run.id, "facts", "reachable", host, "error", read.error))
                continue
            got = read.value
            run.fingerprint.setdefault(host, {}).update(
                {
                    "os": f"{got.get('os_id')} {got.get('os_version')}",
                    "kernel": str(got.get("kernel")),
                    "nvidia module": str(got.get("nvidia_loaded_version") or ""),
                }
            )
            out.append(
                Record(
                    run.id,
                    "facts",
                    "reachable",
                    host,
                    "pass",
                    f"{got.get('os_name')}, kernel {got.get('kernel')}",
                )
            )
        return out

    def health(name: str) -> Callable[[], list[Record]]:
        def read() -> list[Record]:
            fleet = fleet_health.gather(read_all(inv, gpu_hosts, fleet_health.AgentReport))
            run.raw[f"{name.replace(' ', '-')}.json"] = json.dumps(
                fleet.hosts, indent=2, sort_keys=True
            ).encode()
            out = []
            for host, doc in sorted(fleet.hosts.items()):
                if name == "health start":
                    agent_docs[host] = doc
                if name == "health start" and doc.get("driver_version"):
                    run.fingerprint.setdefault(host, {}).update(
                        {
                            "driver": str(doc.get("driver_version")),
                            "cuda": str(doc.get("cuda_driver_version")),
                        }
                    )
                out += from_health(run.id, name, host, doc)
            return out

        return read

    def diagnostics() -> list[Record]:
        reads = read_all(inv, gpu_hosts, DcgmDiag, kwargs={"level": dcgm.LEVELS[run.profile]})
        out = []
        for host, read in sorted(reads.items()):
            if not read.reachable:
                out.append(Record(run.id, dcgm.STAGE, "dcgm", host, "error", read.error))
                continue
            run.raw[f"dcgm-{host}.json"] = read.value.encode()
            out += dcgm.records(run.id, host, read.value, gpus_of(agent_docs.get(host, {})))
        return out

    def bandwidths() -> list[Record]:
        """nvbandwidth on every GPU node at once; all_reduce_perf at once on the nodes with the same GPU count
        (each node's test is on its own GPUs: nodes do not disturb each other)."""
        reads = read_all(inv, gpu_hosts, NvBandwidth)
        by_count: dict[int, list[str]] = {}
        for host in gpu_hosts:
            by_count.setdefault(len(gpus_of(agent_docs.get(host, {}))), []).append(host)
        reduce_reads = {}
        for count, hosts in sorted(by_count.items()):
            if count:
                reduce_reads.update(read_all(inv, hosts, AllReduce, kwargs={"gpus": count}))
        out = []
        for host in gpu_hosts:
            gpus = gpus_of(agent_docs.get(host, {}))
            limits = floors.get(host, {})
            read = reads[host]
            if not read.reachable:
                out.append(Record(run.id, bandwidth.STAGE, "nvbandwidth", host, "error", read.error))
            else:
                run.raw[f"nvbandwidth-{host}.json"] = read.value.encode()
                out += bandwidth.nvbandwidth_records(run.id, host, read.value, gpus, limits)
            got = reduce_reads.get(host)
            if got is None:
                out.append(
                    Record(
                        run.id,
                        bandwidth.STAGE,
                        bandwidth.ALL_REDUCE,
                        host,
                        "not-run",
                        "no GPU count from the health report at the start",
                    )
                )
            elif not got.reachable:
                out.append(Record(run.id, bandwidth.STAGE, bandwidth.ALL_REDUCE, host, "error", got.error))
            else:
                run.raw[f"all_reduce_perf-{host}.txt"] = got.value.encode()
                models = [g["name"] for _, g in sorted(gpus.items())]
                out += bandwidth.all_reduce_records(run.id, host, got.value, models, limits)
        return out

    def endpoints() -> list[Record]:
        out = []
        results = []
        for target in targets:
            run.fingerprint.setdefault(target.host, {})[f"endpoint {target.service}"] = target.model
            for concurrency in sweep_points(target.load.concurrency, run.profile):
                result = check(
                    target,
                    log,
                    concurrency=concurrency,
                    requests=max(target.load.requests // 2, concurrency * 4),
                )
                results.append(result)
                out += from_load(run.id, result)
        run.raw["endpoints.json"] = json.dumps(results, indent=2, default=str).encode()
        return out

    stage("facts", facts, every)
    start = stage("health start", health("health start"), gpu_hosts) if gpu_hosts else []
    if gpu_hosts:
        stage(dcgm.STAGE, diagnostics, gpu_hosts)
        stage(bandwidth.STAGE, bandwidths, gpu_hosts)
    if targets:
        stage("endpoints", endpoints, sorted({t.host for t in targets}))
    if gpu_hosts:
        end = stage("health end", health("health end"), gpu_hosts)
        run.records += health_change(run.id, start, end)
    if baseline is not None:
        then_summary, then_records = baseline
        changed = baselines.fingerprint_changes(run.fingerprint, then_summary.get("fingerprint") or {})
        run.records += baselines.compare(run.id, run.records, then_records, changed, tolerances)
