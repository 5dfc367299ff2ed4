"""apt-cacher-ng on the lab gateway: the lab hosts' only way to OS packages (the site's upstream mirror)."""

from __future__ import annotations

from sovinfra import paths
from sovinfra.lab import config, processes

MARK = "sovinfra-lab-acng"


def _conf_text(gateway: str) -> str:
    cache = paths.lab_cache_dir() / "apt-cache"
    logs = paths.lab_dir() / "apt-proxy-log"
    cache.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    return (
        f"CacheDir: {cache}\n"
        f"LogDir: {logs}\n"
        "SupportDir: /usr/lib/apt-cacher-ng\n"
        f"Port: {config.APT_PROXY_PORT}\n"
        # Only the bridge: the proxy serves the lab and nothing else.
        f"BindAddress: {gateway}\n"
        f"SocketPath: {paths.lab_dir() / 'acng.socket'}\n"
        f"PidFile: {paths.lab_dir() / 'acng.pid'}\n"
        f"Remap-debrep: file:deb_mirror*.gz /debian ; {config.DEBIAN_MIRROR}/\n"
        "Remap-secdeb: security.debian.org deb.debian.org/debian-security ; "
        "http://deb.debian.org/debian-security/\n"
        "ExThreshold: 4\n"
        "ForeGround: 1\n"
    )


def ensure(gateway: str, pid: int) -> int:
    """Start the proxy unless ours already runs; return its pid."""
    if processes.alive(pid, MARK) and processes.answers(gateway, config.APT_PROXY_PORT):
        return pid
    processes.stop(pid, MARK)
    conf_dir = paths.lab_dir() / MARK
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "acng.conf").write_text(_conf_text(gateway))
    return processes.start_daemon(
        ["apt-cacher-ng", "-c", str(conf_dir)],
        paths.lab_dir() / "apt-proxy.log",
        gateway,
        config.APT_PROXY_PORT,
        "apt-cacher-ng",
    )


def stop(pid: int) -> None:
    processes.stop(pid, MARK)
    for stray in processes.find(lambda args: any(MARK in a for a in args)):
        processes.stop(stray, MARK)
