"""NVIDIA's download servers as the lab has them: the stand-in repositories served over http on this
machine's loopback, the connected side only (aptly mirrors http, not file:). Lab hosts cannot reach it:
the site snapshot is their only way to NVIDIA's packages, as on a real air-gapped site."""

from __future__ import annotations

import functools
import http.server
import socket
import subprocess
import sys
import time
from pathlib import Path

from sovinfra import paths
from sovinfra.errors import UserError
from sovinfra.lab import config, processes

MARK = "sovinfra.lab.nvidia_upstream"


def url(sub: str) -> str:
    return f"http://127.0.0.1:{config.NVIDIA_UPSTREAM_PORT}/{sub}"


def _answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", config.NVIDIA_UPSTREAM_PORT), timeout=0.5):
            return True
    except OSError:
        return False


def ensure(root: Path, pid: int) -> int:
    """Serve `root` unless ours already serves it; return the server's pid."""
    if processes.alive(pid, MARK) and str(root) in processes.cmdline(pid) and _answers():
        return pid
    stop(pid)
    with (paths.lab_dir() / "nvidia-upstream.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", MARK, str(root), str(config.NVIDIA_UPSTREAM_PORT)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UserError(
                f"the stand-in NVIDIA server exited ({proc.returncode}); "
                f"see {paths.lab_dir()}/nvidia-upstream.log"
            )
        if _answers():
            return proc.pid
        time.sleep(0.1)
    raise UserError(f"the stand-in NVIDIA server did not answer on 127.0.0.1:{config.NVIDIA_UPSTREAM_PORT}")


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
