"""A rolling driver upgrade (`sovinfra upgrade`, one node at a time: drain, converge, health, services,
probe, return) vs an all-at-once converge of the same change (`apply gpu_nodes`, then `apply health_agent`
for the agent's expectations of the new driver, which the upgrade play also converges), on the 2-node lab, in
the same run, each direction once (570.124.06 <-> 570.133.20 on the lab's stand-ins). The all-at-once
converge is the anchor: the rolling upgrade's extra time is what keeping the site serving costs.

Untimed between runs: the pinned version's package snapshot made the hosts' source (`mirror packages
sync`, `apply base`), as an operator does before either. The lab ends on its own driver and snapshot.
Run as root:  python3 benchmarks/upgrade.py   (uses the lab that is up, else brings one up and down)
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from lab_cli import converged_lab, invoke

from sovinfra import paths
from sovinfra.lab import nvidia_repo

OLD, NEW = nvidia_repo.DRIVER_VERSIONS


def source(inventory: str) -> None:
    invoke("mirror", "packages", "sync", "-i", inventory)
    invoke("apply", "base", "-i", inventory)


def timed(*args: str) -> tuple[float, str]:
    start = time.perf_counter()
    out = invoke(*args)
    return time.perf_counter() - start, out


def all_at_once(inventory: str) -> float:
    stack, _ = timed("apply", "gpu_nodes", "-i", inventory, "--json")
    agent, _ = timed("apply", "health_agent", "-i", inventory, "--limit", "gpu_nodes", "--json")
    return stack + agent


def main() -> None:
    vault = str(paths.lab_dir() / "vault-password")
    with converged_lab(2) as lab, tempfile.TemporaryDirectory() as tmp:
        pinned = str(Path(tmp) / "lab")
        shutil.copytree(lab, pinned)
        (Path(pinned) / "group_vars" / "gpu_nodes.yml").write_text(f"nvidia_driver_version: '{NEW}'\n")
        figures = {}
        source(pinned)
        figures["all at once, up"] = all_at_once(pinned)
        source(lab)
        figures["rolling, down"], out = timed("upgrade", "-i", lab, "--vault-password-file", vault, "--json")
        assert [r["result"] for b in json.loads(out)["batches"] for r in b["hosts"]] == ["upgraded"] * 2
        source(pinned)
        figures["rolling, up"], out = timed("upgrade", "-i", pinned, "--vault-password-file", vault, "--json")
        assert [r["result"] for b in json.loads(out)["batches"] for r in b["hosts"]] == ["upgraded"] * 2
        source(lab)
        figures["all at once, down"] = all_at_once(lab)
    for name, seconds in figures.items():
        print(f"{name:<20} {seconds:7.1f} s")
    for way in ("up", "down"):
        ratio = figures[f"rolling, {way}"] / figures[f"all at once, {way}"]
        print(f"rolling / all at once ({way}): {ratio:.2f}x")


if __name__ == "__main__":
    main()
