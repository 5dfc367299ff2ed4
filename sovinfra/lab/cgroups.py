"""Per-host cgroups on a host without systemd: nspawn needs its own cgroup in each hierarchy."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from sovinfra.lab import config

ROOT = Path("/sys/fs/cgroup")
HIERARCHIES = ("memory", "systemd", "unified")


def _lab_roots() -> list[Path]:
    if (ROOT / "cgroup.controllers").exists():  # pure cgroup v2 host
        return [ROOT / config.CGROUP_NAME]
    return [ROOT / h / config.CGROUP_NAME for h in HIERARCHIES if (ROOT / h).is_dir()]


def enter(host: str) -> None:
    """Move the calling process into the host's cgroups (runs in the child before exec)."""
    for lab_root in _lab_roots():
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
