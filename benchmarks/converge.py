"""Converge cost on lab GPU nodes: stock Ansible vs the project's tuned settings on Ansible's linear
strategy vs the default (tuned + Mitogen), for a no-op re-converge and, with --first, a first converge.

Run as root with no lab up:  python3 benchmarks/converge.py [--sizes 1,4] [--repeat 2] [--first]

Per cell: wall seconds, control-node CPU seconds (the ansible-playbook process tree: this process's
waited children) and machine CPU seconds (every core's busy time from /proc/stat: control node and lab
hosts together). A cell counts only when its recap (ok/changed/skipped per host) equals the other
configurations' for the same hosts, and a no-op changed nothing. Ratios against the tuned-linear
anchor of the same run are the result; absolute times are this machine's.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lab_cli import invoke

from sovinfra import paths
from sovinfra.ansible import runner, strategy
from sovinfra.inventory import site
from sovinfra.lab import manager

LINEAR = strategy.Strategy("linear", None)


@dataclass(frozen=True)
class Config:
    label: str
    strategy: strategy.Strategy
    env: dict[str, str] | None = None


@dataclass
class Cell:
    wall: float
    control_cpu: float
    machine_cpu: float
    recap: dict[str, tuple[int, int, int]]


def stock_config(directory: Path) -> Path:
    """Ansible's defaults (forks 5, no pipelining, no fact cache), plus what the lab needs to work."""
    cfg = directory / "stock.cfg"
    cfg.write_text(
        f"[defaults]\nroles_path = {paths.project_root() / 'roles'}\nhost_key_checking = True\n"
        "interpreter_python = auto_silent\n"
        f"filter_plugins = {paths.project_root() / 'sovinfra/ansible/plugins/filter'}\n"
    )
    return cfg


def machine_busy() -> float:
    """Seconds every core spent busy (not idle or iowait), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]
    return busy / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def converge(limit: str, hosts: int, config: Config, noop: bool) -> Cell:
    inventory = paths.lab_inventory_dir()
    run = runner.PlaybookRun(paths.project_root() / "playbooks" / "site.yml", inventory, limit=limit)
    vault = site.vault_password_file(None, inventory)  # the lab's API key is vaulted, as apply reads it
    if vault:
        run.extra_args += ["--vault-password-file", vault]
    cpu0, busy0, start = children_cpu(), machine_busy(), time.perf_counter()
    result = runner.run_playbook(run, hosts, env_overrides=config.env, strategy=config.strategy)
    cell = Cell(
        time.perf_counter() - start,
        children_cpu() - cpu0,
        machine_busy() - busy0,
        {h: (r.ok, r.changed, r.skipped) for h, r in sorted(result.recap.hosts.items())},
    )
    if not result.ok:
        raise SystemExit(
            f"{config.label} failed on {limit}: {result.recap.failures or result.stderr[-2000:]}"
        )
    changed = sum(r.changed for r in result.recap.hosts.values())
    if noop and changed:
        raise SystemExit(f"{config.label}: not a no-op: {changed} changes on {limit}")
    return cell


def report(table: dict[tuple[str, int], Cell], label: str, n: int, runs: list[Cell]) -> None:
    cell = Cell(
        statistics.median(r.wall for r in runs),
        statistics.median(r.control_cpu for r in runs),
        statistics.median(r.machine_cpu for r in runs),
        runs[0].recap,
    )
    table[(label, n)] = cell
    print(
        f"{label:<13} {n:>2} host(s): wall {cell.wall:7.2f} s  control CPU {cell.control_cpu:7.2f} s "
        f"({cell.control_cpu / n:6.2f} s/host)  machine CPU {cell.machine_cpu:7.2f} s  "
        f"(walls: {', '.join(f'{r.wall:.1f}' for r in runs)})",
        flush=True,
    )


def same_recaps(table: dict[tuple[str, int], Cell], labels: list[str], n: int) -> None:
    """tuned-linear and default run the same configuration on two strategies: identical recaps. Stock
    Ansible gathers facts in every play (no smart gathering), so it has more ok tasks; its changed and
    skipped counts must still match."""
    stock, tuned, default = (table[(label, n)].recap for label in labels)
    if tuned != default:
        raise SystemExit(f"recaps differ at {n} host(s), the comparison does not count: {tuned} vs {default}")
    if {h: r[1:] for h, r in stock.items()} != {h: r[1:] for h, r in tuned.items()}:
        raise SystemExit(f"stock changed/skipped differ at {n} host(s): {stock} vs {tuned}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1,4,8", help="GPU node counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=2, help="no-op runs per cell (median is reported)")
    parser.add_argument("--first", action="store_true", help="also time a first converge of a wiped gpu1")
    args = parser.parse_args()
    sizes = sorted({int(s) for s in args.sizes.split(",")})
    if manager.is_up():
        raise SystemExit("a lab is up: this benchmark brings up and tears down its own")
    inventory = str(paths.lab_inventory_dir())
    try:
        manager.up(max(sizes), air_gapped=True, log=lambda m: print(m, flush=True))
        invoke("lab", "model")
        invoke("mirror", "packages", "sync", "-i", inventory)
        invoke("apply", "-i", inventory, "--json")  # the converged state; also warms the fact cache
        with tempfile.TemporaryDirectory() as tmp:
            configs = [
                Config(
                    "stock", LINEAR, {"ANSIBLE_CONFIG": str(stock_config(Path(tmp))), "ANSIBLE_FORKS": "5"}
                ),
                Config("tuned-linear", LINEAR),
                Config("default", strategy.for_run()),
            ]
            labels = [c.label for c in configs]
            table: dict[tuple[str, int], Cell] = {}
            for n in sizes:
                limit = ",".join(f"gpu{i}" for i in range(1, n + 1))
                for config in configs:
                    report(
                        table, config.label, n, [converge(limit, n, config, True) for _ in range(args.repeat)]
                    )
                same_recaps(table, labels, n)
            first: dict[tuple[str, int], Cell] = {}
            if args.first:
                for config in configs:
                    manager.wipe("gpu1", log=lambda _m: None)
                    report(first, f"first/{config.label}", 1, [converge("gpu1", 1, config, False)])
                same_recaps(first, [f"first/{c.label}" for c in configs], 1)
        print()
        for n in sizes:
            stock, tuned, default = (table[(label, n)] for label in labels)
            print(
                f"no-op {n} host(s): stock/default wall {stock.wall / default.wall:.2f}x, machine CPU "
                f"{stock.machine_cpu / default.machine_cpu:.2f}x (target >= 3x); tuned-linear/default wall "
                f"{tuned.wall / default.wall:.2f}x, machine CPU "
                f"{tuned.machine_cpu / default.machine_cpu:.2f}x (target >= 2x)"
            )
        fleet = [n for n in sizes if n >= 4]  # one host pays the run's fixed costs alone
        if len(fleet) > 1:
            lo, hi = fleet[0], fleet[-1]
            per_host = [table[("default", n)].control_cpu / n for n in (lo, hi)]
            print(
                f"default control CPU per host: {per_host[0]:.2f} s at {lo}, {per_host[1]:.2f} s at {hi} "
                f"({per_host[1] / per_host[0]:.2f}x; target within 1.2x from 4 to 16 hosts)"
            )
        if args.first:
            tuned, default = first[("first/tuned-linear", 1)], first[("first/default", 1)]
            print(
                f"first converge 1 host: tuned-linear/default wall {tuned.wall / default.wall:.2f}x "
                "(target >= 1.5x)"
            )
    finally:
        manager.down(log=lambda _m: None)


if __name__ == "__main__":
    main()
