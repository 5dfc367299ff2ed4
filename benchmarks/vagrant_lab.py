"""A GPU node as a real VM (the Vagrant lab) vs the same node as a container (the lab), one run, ratios.

  first: `sovinfra lab vm up --nodes 1` + the first `vagrant provision` (site.yml through Vagrant's ansible
         provisioner) vs a wiped container node (`lab wipe gpu1`) + `sovinfra apply site --limit gpu1`;
  no-op: the second `vagrant provision` vs a second `apply site --limit gpu1` (both must change nothing).
Both nodes converge against the same converged air-gapped lab (mirror, model, package snapshot with the
VM kernel's headers). Without KVM the VM runs under TCG: its figures are the emulated CPU's, and the note
says what KVM would change. Run as root, no lab up: python3 benchmarks/vagrant_lab.py [--cpus N --memory MIB]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import time
from collections.abc import Callable

from click.testing import CliRunner

from sovinfra import paths
from sovinfra.cli import cli
from sovinfra.lab import manager, vm

VM = "vm1"
RECAP = re.compile(rf"^{VM}\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def timed(what: str, fn: Callable[[], int]) -> tuple[float, int]:
    """Seconds and changes of one step; a step that fails ends the benchmark (a missing figure is no pass)."""
    start = time.perf_counter()
    changed = fn()
    elapsed = time.perf_counter() - start
    print(f"{what:<44} {elapsed:7.1f} s  ({changed} changed)", flush=True)
    return elapsed, changed


def sovinfra(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    if result.exit_code != 0:
        raise SystemExit(f"sovinfra {' '.join(args)} failed: {result.output[-3000:]}")
    return result.output


def apply_gpu1(inventory: str) -> int:
    out = sovinfra("apply", "site", "-i", inventory, "--limit", "gpu1", "--json")
    return int(json.loads(out[out.index("{") :])["hosts"]["gpu1"]["changed"])


def vagrant_provision() -> int:
    env = {**os.environ, "VAGRANT_DEFAULT_PROVIDER": "libvirt", "SOVINFRA_LAB_DIR": str(paths.lab_dir())}
    result = subprocess.run(
        ["vagrant", "provision", VM], cwd=paths.project_root(), env=env, capture_output=True, text=True
    )
    recap = RECAP.search(result.stdout)
    if result.returncode != 0 or not recap or recap[4] != "0":
        raise SystemExit(f"vagrant provision failed: {result.stdout[-4000:]}{result.stderr[-2000:]}")
    return int(recap[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cpus", type=int, default=vm.DEFAULT_CPUS, help="vCPUs of the VM")
    parser.add_argument("--memory", type=int, default=vm.DEFAULT_MEMORY_MIB, help="MiB of the VM")
    args = parser.parse_args()
    if manager.is_up():
        raise SystemExit("a lab is up: this benchmark brings up (and takes down) its own")
    inventory = str(paths.lab_inventory_dir())
    manager.up(2, air_gapped=True, log=lambda _m: None)
    try:
        sovinfra("lab", "model")
        sovinfra("mirror", "packages", "sync", "-i", inventory)
        sovinfra("apply", "-i", inventory)
        print(f"libvirt driver: {vm.driver()}", flush=True)

        def container_up() -> int:
            manager.wipe("gpu1", log=lambda _m: None)
            return 0

        c_up, _ = timed("container: lab wipe gpu1 (a fresh node)", container_up)
        c_first, _ = timed("container: first apply site --limit gpu1", lambda: apply_gpu1(inventory))
        c_noop, c_changed = timed("container: no-op apply site --limit gpu1", lambda: apply_gpu1(inventory))

        def vm_up() -> int:
            sovinfra(
                "lab", "vm", "up", "--nodes", "1", "--cpus", str(args.cpus), "--memory", str(args.memory),
                "--no-provision",
            )  # fmt: skip
            # The VM's kernel headers into the snapshot, published by the mirror (the VM lab's own step).
            sovinfra("mirror", "packages", "sync", "-i", inventory)
            sovinfra("apply", "mirror", "-i", inventory, "--limit", "mirror1")
            return 0

        v_up, _ = timed("VM: lab vm up (box cached) + snapshot", vm_up)
        v_first, _ = timed("VM: first vagrant provision", vagrant_provision)
        v_noop, v_changed = timed("VM: no-op vagrant provision", vagrant_provision)
        if c_changed or v_changed:
            raise SystemExit(f"a no-op run changed things: container {c_changed}, VM {v_changed}")
        print(
            f"\nVM / container, up to a converged GPU node: {(v_up + v_first) / (c_up + c_first):.2f}x "
            f"(converge alone {v_first / c_first:.2f}x); no-op re-run: {v_noop / c_noop:.2f}x"
        )
    finally:
        sovinfra("lab", "vm", "down")
        manager.down(log=lambda _m: None)


if __name__ == "__main__":
    main()
