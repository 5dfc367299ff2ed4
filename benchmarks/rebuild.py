"""Rebuild of a wiped GPU node vs its first provisioning, in one run (disaster-recovery issue; target:
rebuild <= 0.6x of the first provisioning).

A fresh air-gapped lab: the lab model (engine wheels built once into the wheelhouse), the package
snapshot, the mirror host converged; then timed: gpu2's first provisioning (`apply site --limit gpu2`),
`lock`, `lab wipe gpu2`, and `rebuild gpu2` (its converge step reported apart from drift, health, load).
Run as root with no lab up:  python3 benchmarks/rebuild.py
"""

from __future__ import annotations

import json
import time

from lab_cli import invoke

from sovinfra import paths
from sovinfra.lab import manager


def main() -> None:
    if manager.is_up():
        raise SystemExit("a lab is up: this benchmark brings up and tears down its own")
    inventory = str(paths.lab_inventory_dir())
    try:
        manager.up(2, air_gapped=True, log=lambda m: print(m, flush=True))
        invoke("lab", "model")
        invoke("mirror", "packages", "sync", "-i", inventory)
        invoke("apply", "-i", inventory, "--limit", "mirror1,gpu1", "--json")
        start = time.perf_counter()
        invoke("apply", "-i", inventory, "--limit", "gpu2", "--json")
        first = time.perf_counter() - start
        invoke("lock", "-i", inventory)
        manager.wipe("gpu2", log=lambda _m: None)
        start = time.perf_counter()
        record = json.loads(invoke("rebuild", "gpu2", "-i", inventory, "--yes", "--json"))
        whole = time.perf_counter() - start
        egress = manager.egress_packets()
    finally:
        manager.down(log=lambda _m: None)
    steps = {s["step"]: s["seconds"] for s in record["steps"]}
    print("| gpu2 | s | vs first provisioning |")
    print("| --- | --- | --- |")
    print(f"| first provisioning (apply --limit gpu2; mirror ready) | {first:.1f} | 1.00x |")
    print(f"| rebuild: converge step | {steps['converge']:.1f} | {steps['converge'] / first:.2f}x |")
    for name in ("drift", "health", "load"):
        print(f"| rebuild: {name} | {steps.get(name, 0):.1f} | |")
    print(
        f"| rebuild, whole (identity, converge, drift, health, load) | {whole:.1f} | {whole / first:.2f}x |"
    )
    print(f"\nrebuild ok: {record['ok']}; packets sent outside the lab: {egress} (target <= 0.6x)")


if __name__ == "__main__":
    main()
