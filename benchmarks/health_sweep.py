"""GPU health sweep timings: one node's passive sweep of 8 simulated GPUs, and the fleet sweep 1 vs 8 hosts.

Run as root: python3 benchmarks/health_sweep.py [--fleet]. Targets (health issue): a node's full
passive sweep of 8 GPUs <= 150 ms wall; fleet sweep of 8 hosts <= 1.5x one host. Anchors measured in
the same run: a bare NVML round trip (init, count, shutdown) for the sweep, and `python3 -c pass`
for the agent process.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sovinfra.lab import nvmlsim

REPEAT = 30


def timed(fn: Callable[[], object], repeat: int = REPEAT) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs) * 1000


def node_sweep(library: Path) -> None:
    import pynvml

    from sovinfra.health import checks, collect

    ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
    os.environ["SOVINFRA_NVML_PROFILE"] = str(nvmlsim.profile_path("healthy-8x-h100-sxm"))

    def bare() -> None:
        pynvml.nvmlInit()
        pynvml.nvmlDeviceGetCount()
        pynvml.nvmlShutdown()

    anchor = timed(bare)
    sweep = timed(lambda: checks.check_node(collect.collect(kernel_log=True)))
    print(f"bare NVML round trip:             {anchor:7.2f} ms (anchor)")
    ratio = sweep / anchor
    print(f"passive sweep, 8 GPUs + checks:   {sweep:7.2f} ms  ({ratio:.1f}x the anchor; target <= 150 ms)")

    env = {**os.environ, "LD_LIBRARY_PATH": str(library.parent)}
    python = timed(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), 10)
    agent = timed(
        lambda: subprocess.run([sys.executable, "-m", "sovinfra", "health", "--json"], env=env,
                               stdout=subprocess.DEVNULL, check=True), 10)  # fmt: skip
    print(f"python3 -c pass:                  {python:7.2f} ms (anchor)")
    print(f"`sovinfra health --json` process: {agent:7.2f} ms  ({agent / python:.1f}x the anchor)")


def fleet_sweep() -> None:
    from sovinfra import paths
    from sovinfra.fleet import health as fleet_health
    from sovinfra.fleet.connection import read_all
    from sovinfra.inventory import site
    from sovinfra.lab import manager

    was_up = manager.is_up()
    manager.up(8, log=lambda m: print(m, flush=True))
    try:
        inventory = paths.lab_inventory_dir()
        subprocess.run([sys.executable, "-m", "sovinfra", "apply", "-i", str(inventory), "--json"],
                       check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        inv, _ = site.load_checked(inventory)
        cells = {}
        for n in (1, 8):
            hosts = [f"gpu{i}" for i in range(1, n + 1)]

            def sweep(hosts: list[str] = hosts) -> None:
                fleet = fleet_health.gather(read_all(inv, hosts, fleet_health.AgentReport))
                assert not fleet.failed_hosts, fleet.failed_hosts

            cells[n] = timed(sweep, 5)
            print(f"fleet sweep, {n} host(s):          {cells[n]:7.1f} ms")
        print(f"fleet 8 hosts / 1 host:           {cells[8] / cells[1]:.2f}x (target <= 1.5x)")
    finally:
        if not was_up:
            manager.down(log=lambda _m: None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fleet", action="store_true", help="also the fleet sweep (boots 8 lab nodes; root)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        node_sweep(nvmlsim.build(Path(tmp)))
    if args.fleet:
        fleet_sweep()


if __name__ == "__main__":
    main()
