"""Per-host cgroups on a host without systemd: nspawn needs its own cgroup in each hierarchy.

Container runtimes inside a lab host (runc) write cgroups too, and with cgroup v1 and no cgroup namespace
they would land in this machine's root hierarchies. So each host gets its own cgroup in every v1
hierarchy (`nest`), which the host binds over its /sys/fs/cgroup/<controller> at boot (the unit
`hosts.prepare` writes): everything its runtimes make stays under sovinfra-lab/<host>, removed with it.

The lab as a whole also weighs less on the CPU than this machine's own processes (`CPU_SHARES`): the
control node measures the lab (load clients time every token), and a client starved by the nodes it
loads would charge its own lag to them. Weights only matter under contention; an idle control node
leaves the lab every core.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from sovinfra.lab import config

ROOT = Path("/sys/fs/cgroup")
# Where the host's processes are placed: nspawn itself needs memory and systemd's own; cpu for the weight;
# cpuacct for the host's own CPU time (`cpu_seconds`), where it is a hierarchy of its own.
HIERARCHIES = ("memory", "systemd", "unified", "cpu", "cpuacct")
# The lab's CPU weight against one process of this machine's (1024 on cgroup v1, 100 on v2): a load client
# keeps about 4/5 of a core however busy the nodes are.
CPU_SHARES = 256
CPU_WEIGHT = 25


def _hierarchies() -> list[Path]:
    """Every mounted hierarchy under /sys/fs/cgroup (one, the root itself, on a pure cgroup v2 host)."""
    if (ROOT / "cgroup.controllers").exists():
        return [ROOT]
    return sorted(
        p for p in ROOT.iterdir() if p.is_dir() and not p.is_symlink() and (p / "cgroup.procs").exists()
    )


def _lab_roots() -> list[Path]:
    return [h / config.CGROUP_NAME for h in _hierarchies()]


def _placed(hierarchy: Path) -> bool:
    """Whether host processes join the lab's cgroup in this hierarchy (v1 names list their controllers:
    cpu,cpuacct)."""
    return hierarchy == ROOT or bool(set(hierarchy.name.split(",")) & set(HIERARCHIES))


def _weigh(lab_root: Path) -> None:
    """The lab's CPU weight, where this hierarchy has the cpu controller (v1 cpu.shares, v2 cpu.weight)."""
    for name, value in (("cpu.shares", CPU_SHARES), ("cpu.weight", CPU_WEIGHT)):
        if (lab_root / name).exists():
            (lab_root / name).write_text(str(value))


def nest(host: str) -> None:
    """The host's own cgroup in every hierarchy, cpuset's filled from its parent (an empty cpuset takes
    no process)."""
    for hierarchy in _hierarchies():
        parent = hierarchy
        for part in (config.CGROUP_NAME, host):
            group = parent / part
            group.mkdir(exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if (group / name).exists() and not (group / name).read_text().strip():
                    (group / name).write_text((parent / name).read_text())
            parent = group
        _weigh(hierarchy / config.CGROUP_NAME)


def enter(host: str) -> None:
    """Move the calling process into the host's cgroups (runs in the child before exec)."""
    for lab_root in (h / config.CGROUP_NAME for h in _hierarchies() if _placed(h)):
        group = lab_root / host
        group.mkdir(parents=True, exist_ok=True)
        (group / "cgroup.procs").write_text(str(os.getpid()))


def _rmdir_tree(path: Path) -> None:
    if not path.is_dir():
        return
    for child in path.iterdir():
        if child.is_dir():
            _rmdir_tree(child)
    with contextlib.suppress(OSError):
        path.rmdir()


def remove(host: str | None = None) -> list[Path]:
    """Remove the lab's cgroups (one host's, or all); returns those that could not be removed."""
    left = []
    for lab_root in _lab_roots():
        target = lab_root / host if host else lab_root
        _rmdir_tree(target)
        if target.exists():
            left.append(target)
    return left


def leftovers() -> list[Path]:
    return [p for p in _lab_roots() if p.exists()]


def cpu_seconds(host: str) -> float:
    """CPU time the host's processes (its containers included) have used since it started: cpuacct.usage
    (nanoseconds) on cgroup v1, cpu.stat's usage_usec on v2."""
    for hierarchy in _hierarchies():
        group = hierarchy / config.CGROUP_NAME / host
        if (group / "cpuacct.usage").exists():
            return int((group / "cpuacct.usage").read_text()) / 1e9
        if (group / "cpu.stat").exists():
            for line in (group / "cpu.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value) / 1e6
    raise FileNotFoundError(f"no CPU accounting for lab host {host} under {ROOT}")
