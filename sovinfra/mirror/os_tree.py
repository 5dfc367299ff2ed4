"""A Debian root tree made on the control node by mmdebstrap, from the site's package snapshot or Debian's
archive: what the lab's Vagrant box and the netboot OS image are built from (one way to make a tree).

apt chooses the versions, so a merged snapshot with several versions of a package works (debootstrap's own
resolver stops at them); a snapshot is named by its id and its Release checked with the site key.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sovinfra.commands import run


@dataclass(frozen=True)
class Source:
    """Where mmdebstrap takes the packages: an archive by release, or a snapshot (`suite`, its Release
    checked with `keyring`, the site key) at `url`."""

    url: str
    suite: str = ""  # "": the release's own suite (an archive)
    keyring: str = ""  # "": apt's trusted keys (Debian's archive keyring)

    def describe(self, release: str) -> str:
        return f"the site's package snapshot {self.suite}" if self.suite else f"Debian's archive ({release})"


def snapshot_source(store: Path, packages: Iterable[str], snapshot: str = "") -> tuple[Source | None, str]:
    """A published package snapshot of the store (by default its current one) as a source when it holds
    every one of `packages`; else None and why."""
    from sovinfra.mirror import apt_snapshots, sitekey

    snap = snapshot or apt_snapshots.current(store)
    tree = apt_snapshots.published_tree(store)
    if not snap or not (tree / "dists" / snap / "Release").exists():
        return None, f"no package snapshot is published in {store}"
    held = {
        key.split("_", 1)[0]
        for key in apt_snapshots.packages_of(apt_snapshots.Aptly(store), apt_snapshots.site_name(snap))
    }
    missing = sorted(set(packages) - held)
    if missing:
        return None, f"the package snapshot {snap} lacks {', '.join(missing)}"
    # copy: apt copies the packages into the new tree (mmdebstrap installs from inside it; file:// is not
    # visible there).
    return Source(f"copy://{tree}", snap, str(sitekey.public_keyring(store))), ""


def bootstrap_argv(release: str, root: Path, source: Source, packages: Iterable[str]) -> list[str]:
    """mmdebstrap's command line for a minimal tree holding `packages` (pure)."""
    argv = ["mmdebstrap", "--variant=minbase", f"--include={','.join(packages)}"]
    if not source.suite:
        return [*argv, release, str(root), source.url]
    signed = f"[signed-by={source.keyring}] " if source.keyring else ""
    return [*argv, source.suite, str(root), f"deb {signed}{source.url} {source.suite} main"]


def bootstrap(release: str, root: Path, source: Source, packages: Iterable[str]) -> str:
    """Make the tree; returns its one kernel's release. A snapshot's sources named the control node's
    tree: a machine's own come from the base role (the site snapshot), so they are emptied."""
    run(bootstrap_argv(release, root, source, packages))
    if source.suite:
        (root / "etc/apt/sources.list").write_text("")
    kernels = [d.name for d in (root / "lib/modules").iterdir()] if (root / "lib/modules").exists() else []
    return kernels[0] if len(kernels) == 1 else ""


@contextlib.contextmanager
def system_mounts(root: Path) -> Iterator[None]:
    """/dev, /proc and /sys of this machine inside `root`, for tools run by chroot that read them."""
    mounted: list[Path] = []
    try:
        for fs in ("dev", "proc", "sys"):
            run(["mount", "--bind", f"/{fs}", str(root / fs)])
            mounted.append(root / fs)
        yield
    finally:
        for path in reversed(mounted):
            subprocess.run(["umount", str(path)], check=False)
