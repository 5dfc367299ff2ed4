"""The gpu_nodes playbook (NVIDIA stack) on 1 vs 4 lab nodes: first converge and no-op re-run, one run.

Run as root: python3 benchmarks/gpu_stack.py. A throwaway node converges first so that every measured
first converge finds the same warm apt cache (what a rack sees after its first node); the 1-node and
4-node runs then use fresh nodes. Ratios, not absolute times, are the result.
"""

from __future__ import annotations

import time

from sovinfra import paths
from sovinfra.ansible import runner
from sovinfra.lab import manager


def play(playbook: str, limit: str, hosts: int, *extra: str) -> tuple[float, int]:
    run = runner.PlaybookRun(
        paths.project_root() / "playbooks" / playbook, paths.lab_inventory_dir(), limit=limit
    )
    run.extra_args += list(extra)
    start = time.perf_counter()
    result = runner.run_playbook(run, hosts)
    elapsed = time.perf_counter() - start
    if not result.ok:
        raise SystemExit(f"{playbook} failed on {limit}: {result.recap.failures or result.stderr[-2000:]}")
    return elapsed, sum(r.changed for r in result.recap.hosts.values())


def main() -> None:
    was_up = manager.is_up()
    manager.up(6, log=lambda m: print(m, flush=True))
    try:
        # Everything the stack needs first: base, the health agent (in the lab it installs the simulated GPUs'
        # profile that the stand-in NVML reads), the mirror publishing NVIDIA's repositories.
        play("site.yml", "all", 7, "--skip-tags", "gpu_nodes,model_cache")
        warm, _ = play("gpu_nodes.yml", "gpu6", 1)
        print(f"warm-up node: {warm:.1f} s", flush=True)
        cells = {}
        for label, limit, n in (("1 node", "gpu1", 1), ("4 nodes", "gpu2,gpu3,gpu4,gpu5", 4)):
            first, changed = play("gpu_nodes.yml", limit, n)
            again, unchanged = play("gpu_nodes.yml", limit, n)
            if unchanged:
                raise SystemExit(f"re-run on {limit} changed {unchanged} things")
            cells[label] = (first, again)
            print(
                f"{label:<8} first converge {first:6.1f} s ({changed} changes)  no-op re-run {again:6.1f} s",
                flush=True,
            )
        (f1, n1), (f4, n4) = cells["1 node"], cells["4 nodes"]
        print(f"\nfirst converge 4/1 nodes: {f4 / f1:.2f}x; no-op re-run 4/1 nodes: {n4 / n1:.2f}x")
        print(f"no-op / first converge: 1 node {n1 / f1:.2f}x, 4 nodes {n4 / f4:.2f}x")
    finally:
        if not was_up:
            manager.down(log=lambda _m: None)


if __name__ == "__main__":
    main()
