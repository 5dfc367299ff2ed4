"""Inference on the lab: first converge and re-run on 1 vs 2 nodes; load-test figures of the endpoints.

Run as root with the lab up and the site converged (the README's first command):
python3 benchmarks/inference.py [--requests N]. Each "first converge" starts from nodes with no engine,
model, config or unit (removed over ssh), with the wheelhouse and apt cache warm, as a rack's second
node sees them. Load figures: tokens/s and TTFT p50/p99 at 1, 4 and 16 concurrent streams, with
concurrency 1 as the anchor for throughput. Ratios, not absolute times, are the result.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time

from sovinfra import paths
from sovinfra.ansible import runner
from sovinfra.lab import model as lab_model

NODES = {"gpu1": "10.213.7.11", "gpu2": "10.213.7.12"}
RESET = (
    "systemctl disable --now sovinfra-inference-tiny.service 2>/dev/null; "
    "rm -rf /opt/sovinfra/engines /etc/sovinfra/inference /etc/systemd/system/sovinfra-inference-*.service "
    "/var/lib/sovinfra/hf-cache/models--sovinfra-lab--tiny-llama /etc/pip.conf; systemctl daemon-reload"
)


def ssh(address: str, command: str) -> None:
    lab = paths.lab_dir()
    subprocess.run(
        ["ssh", "-n", "-F", "/dev/null", "-o", "ConnectTimeout=10", "-i", str(lab / "id_ed25519"),
         "-o", f"UserKnownHostsFile={lab / 'known_hosts'}", "-o", "StrictHostKeyChecking=yes",
         f"root@{address}", command],
        check=True, capture_output=True,
    )  # fmt: skip


def play(limit: str, hosts: int) -> tuple[float, int]:
    run = runner.PlaybookRun(
        paths.project_root() / "playbooks" / "inference.yml", paths.lab_inventory_dir(), limit=limit
    )
    run.extra_args += ["--vault-password-file", str(lab_model.vault_password_file())]
    start = time.perf_counter()
    result = runner.run_playbook(run, hosts)
    elapsed = time.perf_counter() - start
    if not result.ok:
        raise SystemExit(f"inference failed on {limit}: {result.recap.failures or result.stderr[-2000:]}")
    return elapsed, sum(r.changed for r in result.recap.hosts.values())


def load(address: str, key: str, concurrency: int, requests: int) -> dict:
    proc = subprocess.run(
        ["sovinfra", "loadtest", f"http://{address}:8000", "--model", "tiny",
         "--concurrency", str(concurrency), "--requests", str(requests), "--warmup", "2",
         "--input-tokens", "64", "--output-tokens", "32", "--json"],
        env={**os.environ, "SOVINFRA_LOADTEST_API_KEY": key}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=64, help="measured requests per concurrency level")
    args = parser.parse_args()
    cells = {}
    for label, limit in (("1 node", "gpu1"), ("2 nodes", "gpu1,gpu2")):
        for name in limit.split(","):
            ssh(NODES[name], RESET)
        first, changed = play(limit, len(limit.split(",")))
        again, unchanged = play(limit, len(limit.split(",")))
        if unchanged:
            raise SystemExit(f"re-run on {limit} changed {unchanged} things")
        cells[label] = (first, again)
        print(
            f"{label:<8} first converge {first:6.1f} s ({changed} changes)  re-run {again:6.1f} s", flush=True
        )
    (f1, r1), (f2, r2) = cells["1 node"], cells["2 nodes"]
    print(f"first converge 2/1 nodes: {f2 / f1:.2f}x; re-run 2/1 nodes: {r2 / r1:.2f}x")
    print(f"re-run / first converge: 1 node {r1 / f1:.2f}x, 2 nodes {r2 / f2:.2f}x\n")

    key = lab_model.api_key(paths.lab_inventory_dir())
    head = ("endpoint", "conc", "ok", "tok/s", "vs c=1", "TTFT p50", "TTFT p99", "TPOT p50")
    print("{:<8} {:>4} {:>7} {:>8} {:>7} {:>9} {:>9} {:>9}".format(*head))
    for name, address in NODES.items():
        anchor = None
        for concurrency in (1, 4, 16):
            s = load(address, key, concurrency, args.requests)
            tps = s["output_tokens_per_s"]
            anchor = anchor or tps
            ok = f"{s['requests_ok']}/{s['requests']}"
            ttft, tpot = s["ttft_ms"], s["tpot_ms"]
            print(
                f"{name:<8} {concurrency:>4} {ok:>7} {tps:>8.0f} {tps / anchor:>6.2f}x "
                f"{ttft['p50']:>9.1f} {ttft['p99']:>9.1f} {tpot['p50']:>9.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
