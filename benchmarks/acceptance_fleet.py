"""`sovinfra acceptance --profile quick` on 1 vs N lab nodes (fleet acceptance issue; target: 4 nodes
<= 1.5x one node of wall time outside the per-endpoint load stage, which is serial by design).

Uses the lab that is up (converged, with at least max(--sizes) GPU nodes), or brings up an air-gapped one,
converges it, and tears it down at the end. Anchor: the same run limited to gpu1, in the same session.
Run as root:  python3 benchmarks/acceptance_fleet.py [--sizes 1,4] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile

from click.testing import CliRunner

from sovinfra import paths
from sovinfra.cli import cli
from sovinfra.lab import manager


def invoke(*args: str, ok: tuple[int, ...] = (0,)) -> str:
    result = CliRunner().invoke(cli, list(args))
    if result.exit_code not in ok:
        raise SystemExit(f"sovinfra {' '.join(args)} failed ({result.exit_code}):\n{result.output[-3000:]}")
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1,4", help="GPU-node counts (comma-separated)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (median reported)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    inventory = str(paths.lab_inventory_dir())
    was_up = manager.is_up()
    rows = []
    try:
        if not was_up:
            manager.up(max(sizes), air_gapped=True, log=lambda m: print(m, flush=True))
            invoke("lab", "model")
            invoke("mirror", "packages", "sync", "-i", inventory)
            invoke("apply", "-i", inventory, "--json")
        with tempfile.TemporaryDirectory() as out:
            for n in sizes:
                limit = ",".join(f"gpu{i}" for i in range(1, n + 1))
                runs = []
                for _ in range(args.repeat):
                    doc = json.loads(
                        invoke(
                            "acceptance",
                            "-i",
                            inventory,
                            "--limit",
                            limit,
                            "--baseline",
                            "none",
                            "--out",
                            out,
                            "--json",
                            ok=(0, 1),
                        )
                    )
                    stages = doc["stage_seconds"]
                    runs.append(
                        (doc["seconds"], doc["seconds"] - stages.get("endpoints", 0.0), doc["verdict"])
                    )
                whole = statistics.median(r[0] for r in runs)
                outside = statistics.median(r[1] for r in runs)
                rows.append((n, whole, outside, sorted({r[2] for r in runs})))
                print(f"{n} node(s): {whole:.2f} s, {outside:.2f} s outside the endpoint stage", flush=True)
    finally:
        if not was_up:
            manager.down(log=lambda _m: None)
    anchor = rows[0][2]
    print("\n| GPU nodes | acceptance s | outside endpoints s | vs 1 node | verdicts |")
    print("| --- | --- | --- | --- | --- |")
    for n, whole, outside, verdicts in rows:
        print(f"| {n} | {whole:.2f} | {outside:.2f} | {outside / anchor:.2f}x | {', '.join(verdicts)} |")


if __name__ == "__main__":
    main()
