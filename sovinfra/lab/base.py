"""The cached Debian base root filesystem every lab host boots from (read-only lower layer)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from sovinfra import paths
from sovinfra.commands import run
from sovinfra.lab import config

MARKER = ".sovinfra-base"


def base_dir(release: str = config.DEFAULT_RELEASE) -> Path:
    return paths.lab_cache_dir() / f"base-{release}"


def is_ready(path: Path, release: str) -> bool:
    marker = path / MARKER
    return marker.exists() and marker.read_text().strip() == config.base_recipe(release)


def ensure_base(release: str = config.DEFAULT_RELEASE, log: Callable[[str], None] = print) -> Path:
    """Build a release's base once per machine; a half-built base is never used (built aside, then
    renamed)."""
    target = base_dir(release)
    if is_ready(target, release):
        return target
    log(f"building lab base image ({release}, minbase) in {target} ...")
    tmp = target.with_name(target.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(config.BASE_PACKAGES)}",
            release,
            str(tmp),
            config.DEBIAN_MIRROR,
        ]
    )
    _prepare(tmp)
    (tmp / MARKER).write_text(config.base_recipe(release) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def _prepare(root: Path) -> None:
    # Host keys and machine-id are per host: none may be shared through the lower layer.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/machine-id").write_text("")
    run(["systemctl", f"--root={root}", "enable", "systemd-networkd.service", "ssh.service"])
    (root / "root/.ssh").mkdir(mode=0o700, exist_ok=True)
    # Each host gets one pinned ed25519 key written by the lab; don't try to load the others.
    (root / "etc/ssh/sshd_config.d/00-lab-hostkey.conf").write_text("HostKey /etc/ssh/ssh_host_ed25519_key\n")
