"""No-op re-converge of site.yml on 1, 4 and 8 lab GPU nodes, tuned vs stock Ansible settings.

Run as root: python3 benchmarks/converge.py [--repeat N]. Prints seconds and the ratios the
foundation issue targets (8 hosts <= 1.5x one host; tuned >= 3x faster than stock). Every figure
comes from this one run on this machine: ratios, not absolute times, are the result.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from sovinfra import paths
from sovinfra.ansible import runner
from sovinfra.lab import manager

SIZES = (1, 4, 8)


def stock_config(directory: Path) -> Path:
    """Ansible's defaults (forks 5, no pipelining, no fact cache), plus what the lab needs to work."""
    cfg = directory / "stock.cfg"
    cfg.write_text(
        f"[defaults]\nroles_path = {paths.project_root() / 'roles'}\nhost_key_checking = True\n"
        "interpreter_python = auto_silent\n"
    )
    return cfg


def converge(limit: str, hosts: int, env: dict[str, str] | None = None, noop: bool = True) -> float:
    root = paths.project_root()
    run = runner.PlaybookRun(root / "playbooks" / "site.yml", paths.lab_inventory_dir(), limit=limit)
    start = time.perf_counter()
    result = runner.run_playbook(run, hosts, env_overrides=env)
    elapsed = time.perf_counter() - start
    if not result.ok:
        raise SystemExit(f"converge failed on {limit}: {result.recap.failures or result.stderr[-2000:]}")
    changed = sum(r.changed for r in result.recap.hosts.values())
    if noop and changed:
        raise SystemExit(f"not a no-op: {changed} changes on {limit}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=2, help="runs per cell (median is reported)")
    args = parser.parse_args()
    was_up = manager.is_up()
    manager.up(max(SIZES), log=lambda m: print(m, flush=True))
    try:
        everything = ",".join(f"gpu{i}" for i in range(1, max(SIZES) + 1))
        converge(
            everything, max(SIZES), noop=False
        )  # reach the converged state; also warms fact cache and apt
        with tempfile.TemporaryDirectory() as tmp:
            stock_env = {"ANSIBLE_CONFIG": str(stock_config(Path(tmp))), "ANSIBLE_FORKS": "5"}
            table: dict[tuple[str, int], float] = {}
            for label, env in (("tuned", None), ("stock", stock_env)):
                for n in SIZES:
                    limit = ",".join(f"gpu{i}" for i in range(1, n + 1))
                    runs = [converge(limit, n, env) for _ in range(args.repeat)]
                    table[(label, n)] = statistics.median(runs)
                    print(
                        f"{label:<6} {n} host(s): {table[(label, n)]:6.2f} s  (runs: "
                        f"{', '.join(f'{r:.2f}' for r in runs)})",
                        flush=True,
                    )
        print()
        print(f"tuned 8 hosts / 1 host: {table[('tuned', 8)] / table[('tuned', 1)]:.2f}x (target <= 1.5x)")
        print(f"tuned 4 hosts / 1 host: {table[('tuned', 4)] / table[('tuned', 1)]:.2f}x")
        for n in SIZES:
            print(
                f"stock / tuned at {n} host(s): "
                f"{table[('stock', n)] / table[('tuned', n)]:.2f}x (target >= 3x)"
            )
    finally:
        if not was_up:
            manager.down(log=lambda _m: None)


if __name__ == "__main__":
    main()
