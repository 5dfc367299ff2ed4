"""Converge cost on lab GPU nodes: stock Ansible vs the project's tuned settings on Ansible's linear
strategy vs the default (tuned + Mitogen), for a no-op re-converge and, with --first, a first converge.

Run as root with no lab up:
  python3 benchmarks/converge.py [--sizes 1,4] [--repeat 2] [--first] [--configs stock,tuned-linear,default]
The control node's fit (how its CPU grows with the fleet):
  python3 benchmarks/converge.py --sizes 1,4,8,16 --repeat 1 --first --configs default

Per cell: wall seconds, control-node CPU seconds (the ansible-playbook process tree: this process's
waited children), the lab hosts' own CPU seconds (each converged host's cgroup) and machine CPU seconds
(every core's busy time from /proc/stat: control node and lab hosts together). With --first, each size
is also converged from wiped hosts. A cell counts only when its recap (ok/changed/skipped per host)
equals the other configurations' for the same hosts, and a no-op changed nothing. Ratios against the
anchors of the same run are the result; absolute times are this machine's. With two or more sizes, the
control node's CPU is fitted as fixed + per-host x hosts (least squares).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab_cli import invoke

from sovinfra import paths
from sovinfra.ansible import runner, strategy
from sovinfra.inventory import site
from sovinfra.lab import cgroups, manager

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
    lab_cpu: float
    machine_cpu: float
    recap: dict[str, tuple[int, int, int]]
    # (host, task, status) -> how many results: what a recap difference is made of
    tasks: Counter[tuple[str, str, str]] = field(default_factory=Counter)


def stock_config(directory: Path) -> Path:
    """Ansible's defaults (forks 5, no pipelining, no fact cache), plus what the lab needs to work."""
    cfg = directory / "stock.cfg"
    cfg.write_text(
        f"[defaults]\nroles_path = {paths.project_root() / 'roles'}\nhost_key_checking = True\n"
        "interpreter_python = auto_silent\n"
        f"filter_plugins = {paths.project_root() / 'sovinfra/ansible/plugins/filter'}\n"
        f"library = {paths.project_root() / 'sovinfra/ansible/plugins/modules'}\n"
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


def lab_cpu(names: list[str]) -> float:
    return sum(cgroups.cpu_seconds(name) for name in names)


def converge(names: list[str], config: Config, noop: bool) -> Cell:
    limit, hosts = ",".join(names), len(names)
    inventory = paths.lab_inventory_dir()
    run = runner.PlaybookRun(paths.project_root() / "playbooks" / "site.yml", inventory, limit=limit)
    vault = site.vault_password_file(None, inventory)  # the lab's API key is vaulted, as apply reads it
    if vault:
        run.extra_args += ["--vault-password-file", vault]
    tasks: Counter[tuple[str, str, str]] = Counter()

    def seen(event: dict[str, Any]) -> None:
        if event.get("event") == "host_result":
            tasks[(str(event.get("host")), str(event.get("task")), str(event.get("status")))] += 1

    cpu0, lab0, busy0, start = children_cpu(), lab_cpu(names), machine_busy(), time.perf_counter()
    result = runner.run_playbook(run, hosts, seen, env_overrides=config.env, strategy=config.strategy)
    cell = Cell(
        time.perf_counter() - start,
        children_cpu() - cpu0,
        lab_cpu(names) - lab0,
        machine_busy() - busy0,
        {h: (r.ok, r.changed, r.skipped) for h, r in sorted(result.recap.hosts.items())},
        tasks,
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
        statistics.median(r.lab_cpu for r in runs),
        statistics.median(r.machine_cpu for r in runs),
        runs[0].recap,
        runs[0].tasks,
    )
    table[(label, n)] = cell
    print(
        f"{label:<13} {n:>2} host(s): wall {cell.wall:7.2f} s  control CPU {cell.control_cpu:7.2f} s "
        f"({cell.control_cpu / n:6.2f} s/host)  lab hosts CPU {cell.lab_cpu / n:6.2f} s/host  "
        f"machine CPU {cell.machine_cpu:7.2f} s  "
        f"(walls: {', '.join(f'{r.wall:.1f}' for r in runs)})  "
        # What a host's run is made of: ok/changed/skipped of the first GPU node (every task costs).
        f"gpu1 ok/changed/skipped {'/'.join(map(str, cell.recap.get('gpu1', ())))}",
        flush=True,
    )


def recap_problem(table: dict[tuple[str, int], Cell], labels: list[str], n: int) -> str:
    """Why the configurations' recaps at n hosts do not allow a comparison ("" when they do).
    tuned-linear and default run the same configuration on two strategies: identical recaps. Stock
    Ansible gathers facts in every play (no smart gathering), so it has more ok tasks; its changed and
    skipped counts must still match. The run goes on either way: the other sizes still count."""
    recaps = {label.split("/")[-1]: table[(label, n)].recap for label in labels}
    tuned, default = recaps.get("tuned-linear"), recaps.get("default")
    if tuned is not None and default is not None and tuned != default:
        cells = {label.split("/")[-1]: table[(label, n)] for label in labels}
        return f"tuned-linear and default recaps differ: {tuned} vs {default}; " + task_difference(
            cells["tuned-linear"].tasks, cells["default"].tasks
        )
    stock, other = recaps.get("stock"), tuned or default
    counts = [{h: r[1:] for h, r in recap.items()} for recap in (stock, other) if recap is not None]
    if len(counts) == 2 and counts[0] != counts[1]:
        return f"stock changed/skipped differ: {stock} vs {other}"
    return ""


def task_difference(a: Counter[tuple[str, str, str]], b: Counter[tuple[str, str, str]]) -> str:
    """The task results one run had and the other did not, as `host task: status` (the first few)."""
    only = [f"+{h} {t}: {s}" for (h, t, s) in sorted((a - b).elements())]
    only += [f"-{h} {t}: {s}" for (h, t, s) in sorted((b - a).elements())]
    if not only:
        return "every task's result matched (the difference is in Ansible's own counting)"
    return "; ".join(only[:8]) + (f" (and {len(only) - 8} more)" if len(only) > 8 else "")


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares fixed + per_host x hosts through (hosts, seconds) points."""
    xs, ys = [float(x) for x, _ in points], [y for _, y in points]
    slope, intercept = statistics.linear_regression(xs, ys)
    return intercept, slope


def print_fit(table: dict[tuple[str, int], Cell], label: str, sizes: list[int]) -> None:
    cells = [(n, table[(label, n)]) for n in sizes]
    fixed, per_host = fit([(n, c.control_cpu) for n, c in cells])
    worst = max(abs(c.control_cpu - (fixed + per_host * n)) / c.control_cpu for n, c in cells)
    print(
        f"{label}: control CPU = {fixed:.1f} s + {per_host:.2f} s x hosts (largest residual {worst:.0%}); "
        f"lab hosts CPU per host {', '.join(f'{c.lab_cpu / n:.1f}' for n, c in cells)} s; "
        f"wall {', '.join(f'{c.wall:.0f}' for _, c in cells)} s at {', '.join(str(n) for n in sizes)} hosts"
    )
    fleet = [n for n in sizes if n >= 4]  # one host pays the run's fixed costs alone
    if len(fleet) > 1:
        lo, hi = (table[(label, n)].control_cpu / n for n in (fleet[0], fleet[-1]))
        print(
            f"{label}: control CPU per host {lo:.2f} s at {fleet[0]}, {hi:.2f} s at {fleet[-1]} hosts "
            f"({hi / lo:.2f}x; target within 1.2x from 4 to 16 hosts)"
        )


CONFIGS = ("stock", "tuned-linear", "default")


def configs_in(tmp: Path, wanted: list[str]) -> list[Config]:
    every = {
        "stock": Config("stock", LINEAR, {"ANSIBLE_CONFIG": str(stock_config(tmp)), "ANSIBLE_FORKS": "5"}),
        "tuned-linear": Config("tuned-linear", LINEAR),
        "default": Config("default", strategy.for_run()),
    }
    return [every[label] for label in CONFIGS if label in wanted]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1,4,8", help="GPU node counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=2, help="no-op runs per cell (median is reported)")
    parser.add_argument("--first", action="store_true", help="also time a first converge of wiped nodes")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="which of them to run, comma-separated")
    args = parser.parse_args()
    sizes = sorted({int(s) for s in args.sizes.split(",")})
    wanted = args.configs.split(",")
    if unknown := set(wanted) - set(CONFIGS):
        raise SystemExit(
            f"--configs: unknown {', '.join(sorted(unknown))} (choose from {', '.join(CONFIGS)})"
        )
    if manager.is_up():
        raise SystemExit("a lab is up: this benchmark brings up and tears down its own")
    inventory = str(paths.lab_inventory_dir())
    try:
        manager.up(max(sizes), air_gapped=True, log=lambda m: print(m, flush=True))
        invoke("lab", "model")
        invoke("mirror", "packages", "sync", "-i", inventory)
        invoke("apply", "-i", inventory, "--json")  # the converged state; also warms the fact cache
        with tempfile.TemporaryDirectory() as tmp:
            configs = configs_in(Path(tmp), wanted)
            labels = [c.label for c in configs]
            table: dict[tuple[str, int], Cell] = {}
            void: dict[tuple[str, int], str] = {}  # comparisons whose recaps differ, and why
            for n in sizes:
                names = [f"gpu{i}" for i in range(1, n + 1)]
                for config in configs:
                    report(
                        table, config.label, n, [converge(names, config, True) for _ in range(args.repeat)]
                    )
                void[("no-op", n)] = recap_problem(table, labels, n)
            if args.first:
                for n in sizes:
                    names = [f"gpu{i}" for i in range(1, n + 1)]
                    for config in configs:
                        for name in names:
                            manager.wipe(name, log=lambda _m: None)
                        report(table, f"first/{config.label}", n, [converge(names, config, False)])
                    void[("first", n)] = recap_problem(table, [f"first/{label}" for label in labels], n)
        print()
        for n in sizes:
            for kind in ("no-op", "first"):
                if void.get((kind, n)):
                    print(f"{kind} {n} host(s): DOES NOT COUNT: {void[(kind, n)]}")
            if len(labels) == len(CONFIGS):
                stock, tuned, default = (table[(label, n)] for label in labels)
                print(
                    f"no-op {n} host(s): stock/default wall {stock.wall / default.wall:.2f}x, machine CPU "
                    f"{stock.machine_cpu / default.machine_cpu:.2f}x (target >= 3x); tuned-linear/default "
                    f"wall {tuned.wall / default.wall:.2f}x, machine CPU "
                    f"{tuned.machine_cpu / default.machine_cpu:.2f}x (target >= 2x)"
                )
            if args.first and {"tuned-linear", "default"} <= set(labels):
                tuned, default = table[("first/tuned-linear", n)], table[("first/default", n)]
                print(
                    f"first converge {n} host(s): tuned-linear/default wall {tuned.wall / default.wall:.2f}x "
                    "(target >= 1.5x)"
                )
        if len(sizes) > 1:
            for label in labels:
                print_fit(table, label, sizes)
                if args.first:
                    print_fit(table, f"first/{label}", sizes)
    finally:
        manager.down(log=lambda _m: None)


if __name__ == "__main__":
    main()
