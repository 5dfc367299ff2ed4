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

from lab_cli import converged_lab, invoke


def one_run(inventory: str, limit: str, out: str) -> tuple[float, float, str]:
    """(whole seconds, seconds outside the endpoint stage, verdict) of one quick acceptance run."""
    args = ("acceptance", "-i", inventory, "--limit", limit, "--baseline", "none", "--out", out, "--json")
    doc = json.loads(invoke(*args, ok=(0, 1)))
    return doc["seconds"], doc["seconds"] - doc["stage_seconds"].get("endpoints", 0.0), doc["verdict"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1,4", help="GPU-node counts (comma-separated)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (median reported)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with converged_lab(max(sizes)) as inventory, tempfile.TemporaryDirectory() as out:
        for n in sizes:
            limit = ",".join(f"gpu{i}" for i in range(1, n + 1))
            runs = [one_run(inventory, limit, out) for _ in range(args.repeat)]
            whole = statistics.median(r[0] for r in runs)
            outside = statistics.median(r[1] for r in runs)
            rows.append((n, whole, outside, sorted({r[2] for r in runs})))
            print(f"{n} node(s): {whole:.2f} s, {outside:.2f} s outside the endpoint stage", flush=True)
    anchor = rows[0][2]
    print("\n| GPU nodes | acceptance s | outside endpoints s | vs 1 node | verdicts |")
    print("| --- | --- | --- | --- | --- |")
    for n, whole, outside, verdicts in rows:
        print(f"| {n} | {whole:.2f} | {outside:.2f} | {outside / anchor:.2f}x | {', '.join(verdicts)} |")


if __name__ == "__main__":
    main()
