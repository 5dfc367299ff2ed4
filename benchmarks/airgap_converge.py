"""First converge of a fresh 2-node lab site: air-gapped (the site's package snapshot) vs through the
gateway's apt proxy (the anchor), in the same run (sovereign mirror issue; target: no slower).

Each round brings up fresh hosts (`lab up` after `lab down`: new overlays), gives them the lab model,
and times `apply site`. The proxy's cache and the snapshot are both warm (made before the timed part),
so the comparison is of how hosts get packages, not of the internet.
Run as root with no lab up:  python3 benchmarks/airgap_converge.py [--nodes 2]
"""

from __future__ import annotations

import argparse
import json
import time

from lab_cli import invoke

from sovinfra import paths
from sovinfra.lab import manager


def converge(nodes: int, air_gapped: bool) -> tuple[float, int, int | None]:
    """Fresh hosts, model, (snapshot), then the timed first converge; (seconds, changes, egress)."""
    manager.down(log=lambda _m: None)
    manager.up(nodes, air_gapped=air_gapped, log=lambda _m: None)
    invoke("lab", "model")
    inventory = str(paths.lab_inventory_dir())
    if air_gapped:
        invoke("mirror", "packages", "sync", "-i", inventory)
    start = time.perf_counter()
    summary = json.loads(invoke("apply", "-i", inventory, "--json"))
    elapsed = time.perf_counter() - start
    changed = sum(h["changed"] for h in summary["hosts"].values())
    return elapsed, changed, manager.egress_packets()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=2)
    args = parser.parse_args()
    if manager.is_up():
        raise SystemExit("a lab is up: this benchmark brings up and tears down its own")
    try:
        proxy = converge(args.nodes, air_gapped=False)
        gapped = converge(args.nodes, air_gapped=True)
    finally:
        manager.down(log=lambda _m: None)
    print(f"| first converge, {args.nodes} GPU nodes + mirror | s | changes | egress packets | vs anchor |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| through the apt proxy (anchor) | {proxy[0]:.1f} | {proxy[1]} | {proxy[2]} | 1.00x |")
    ratio = gapped[0] / proxy[0]
    print(f"| air-gapped, site snapshot | {gapped[0]:.1f} | {gapped[1]} | {gapped[2]} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
