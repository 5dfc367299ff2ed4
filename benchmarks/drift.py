"""`sovinfra drift` on 1..N lab hosts, and against `apply --check --diff` of site.yml on the same hosts
(disaster-recovery issue; targets: drift >= 5x faster than the check-mode run, and it finds what check
mode cannot: a flipped byte in a cached model).

Uses the lab that is up (converged), or brings up an air-gapped one with max(--sizes) GPU nodes,
converges and locks it, and tears it down at the end. Every figure comes from this one run.
Run as root:  python3 benchmarks/drift.py [--sizes 1,4,8] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time

from lab_cli import converged_lab, invoke

from sovinfra.lab import manager


def timed(*args: str, ok: tuple[int, ...] = (0,)) -> tuple[float, str]:
    start = time.perf_counter()
    out = invoke(*args, ok=ok)
    return time.perf_counter() - start, out


def ssh(host: str, command: str) -> None:
    subprocess.run([*manager.ssh_argv(host), command], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1,4,8", help="GPU-node counts to read (comma-separated)")
    parser.add_argument("--repeat", type=int, default=3, help="drift runs per size (median reported)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with converged_lab(max(sizes)) as inventory:
        invoke("lock", "-i", inventory)
        rows = []
        for n in sizes:
            limit = ",".join(f"gpu{i}" for i in range(1, n + 1))
            runs = [timed("drift", "-i", inventory, "--limit", limit)[0] for _ in range(args.repeat)]
            quick = [
                timed("drift", "-i", inventory, "--limit", limit, "--quick")[0] for _ in range(args.repeat)
            ]
            rows.append((n, statistics.median(runs), statistics.median(quick)))
            print(f"drift on {n} host(s): {rows[-1][1]:.2f} s (quick {rows[-1][2]:.2f} s)", flush=True)
        limit = ",".join(f"gpu{i}" for i in range(1, max(sizes) + 1))
        check_s, _ = timed("apply", "-i", inventory, "--check", "--diff", "--limit", limit, "--json")
        # What each finds after one byte of gpu1's cached model is flipped.
        ssh("gpu1", "b=$(readlink -f /var/lib/sovinfra/hf-cache/models--*/snapshots/*/*.gguf | head -n 1); "
                    "printf X | dd of=$b bs=1 seek=4096 conv=notrunc status=none")  # fmt: skip
        _, checked = timed("apply", "-i", inventory, "--check", "--diff", "--limit", "gpu1", "--json")
        check_changes = json.loads(checked)["changes"]
        _, drifted = timed("drift", "-i", inventory, "--limit", "gpu1", "--json", ok=(1,))
        found = [i["what"] for i in json.loads(drifted)["items"]]
        invoke("apply", "-i", inventory, "--limit", "gpu1", "--json")  # repair
    base = rows[0][1]
    print(
        f"\n| hosts | drift s | vs 1 host | drift --quick s | apply --check --diff s ({max(sizes)} hosts) |"
    )
    print("| --- | --- | --- | --- | --- |")
    for n, median, quick_median in rows:
        print(f"| {n} | {median:.2f} | {median / base:.2f}x | {quick_median:.2f} | |")
    print(f"| check mode | | | | {check_s:.1f} |")
    print(f"\ncheck mode / drift on {max(sizes)} host(s): {check_s / rows[-1][1]:.1f}x (target >= 5x)")
    print(f"after a flipped model byte: check mode reported {len(check_changes)} change(s) {check_changes}; "
          f"drift reported {found}")  # fmt: skip


if __name__ == "__main__":
    main()
