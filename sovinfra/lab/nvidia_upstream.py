"""NVIDIA's download servers as the lab has them: the stand-in repositories served over http on this
machine's loopback, the connected side only (aptly mirrors http, not file:). Lab hosts cannot reach it:
the site snapshot is their only way to NVIDIA's packages, as on a real air-gapped site."""

from __future__ import annotations

import functools
import http.server
import sys
from pathlib import Path

from sovinfra import paths
from sovinfra.lab import config, processes

MARK = "sovinfra.lab.nvidia_upstream"


def url(sub: str) -> str:
    return f"http://127.0.0.1:{config.NVIDIA_UPSTREAM_PORT}/{sub}"


def ensure(root: Path, pid: int) -> int:
    """Serve `root` unless ours already serves it; return the server's pid."""
    if (
        processes.alive(pid, MARK)
        and str(root) in processes.cmdline(pid)
        and processes.answers("127.0.0.1", config.NVIDIA_UPSTREAM_PORT)
    ):
        return pid
    stop(pid)
    return processes.start_daemon(
        [sys.executable, "-m", MARK, str(root), str(config.NVIDIA_UPSTREAM_PORT)],
        paths.lab_dir() / "nvidia-upstream.log",
        "127.0.0.1",
        config.NVIDIA_UPSTREAM_PORT,
        "the stand-in NVIDIA server",
    )


def stop(pid: int) -> None:
    processes.stop(pid, MARK)
    for stray in processes.find(lambda args: MARK in args):
        processes.stop(stray, MARK)


def main(argv: list[str]) -> None:
    root, port = argv
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
    with http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), handler) as server:
        server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
