"""The site endpoint's cost: TTFT p50/p99 and tokens/s through the gateway (HAProxy on the mirror host)
vs straight to one node, at 1, 16 and 64 concurrent streams, in the same run, alternating (direct first).

Target (day-2 issue): the gateway adds <= 1 ms to TTFT p50 and loses no throughput. One node direct is the
anchor; the gateway spreads requests over both nodes (which share this machine's cores in the lab, so no
gain is expected from the second one here: a loss would be the gateway's).

Run as root with the lab up and the site converged (the README's first command):
python3 benchmarks/gateway.py [--requests N] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
from pathlib import Path

from sovinfra import paths
from sovinfra.lab import model as lab_model

NODE = "http://10.213.7.11:8000"
GATEWAY = "http://10.213.7.10:4000"


def load(url: str, key: str, concurrency: int, requests: int) -> dict:
    proc = subprocess.run(
        ["sovinfra", "loadtest", url, "--model", "tiny", "--concurrency", str(concurrency),
         "--requests", str(requests), "--warmup", "2", "--input-tokens", "64", "--output-tokens", "32",
         "--json"],
        env={**os.environ, "SOVINFRA_LOADTEST_API_KEY": key}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if not proc.stdout.strip():
        raise SystemExit(f"loadtest {url} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="direct/gateway pairs per concurrency")
    args = parser.parse_args()
    key = lab_model.api_key(Path(paths.lab_inventory_dir()))
    print(
        f"{'conc':>4} {'path':<8} {'TTFT50':>8} {'TTFT99':>8} {'tok/s':>8}   (median of {args.rounds} rounds)"
    )
    for concurrency in (1, 16, 64):
        runs: dict[str, list[dict]] = {"direct": [], "gateway": []}
        for _ in range(args.rounds):
            for name, url in (("direct", NODE), ("gateway", GATEWAY)):
                runs[name].append(load(url, key, concurrency, max(args.requests, concurrency * 2)))
        figures = {}
        for name, summaries in runs.items():
            figures[name] = (
                statistics.median(s["ttft_ms"]["p50"] for s in summaries),
                statistics.median(s["ttft_ms"]["p99"] for s in summaries),
                statistics.median(s["output_tokens_per_s"] for s in summaries),
            )
            p50, p99, tps = figures[name]
            print(f"{concurrency:>4} {name:<8} {p50:>8.1f} {p99:>8.1f} {tps:>8.1f}")
        added = figures["gateway"][0] - figures["direct"][0]
        ratio = figures["gateway"][2] / figures["direct"][2]
        print(
            f"{concurrency:>4} gateway: TTFT p50 {added:+.1f} ms, throughput {ratio:.2f}x of one node direct"
        )


if __name__ == "__main__":
    main()
