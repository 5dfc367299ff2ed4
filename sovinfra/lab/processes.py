"""Finding, starting and stopping the lab's own long-running processes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from sovinfra.errors import UserError


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def alive(pid: int, must_contain: str) -> bool:
    """True when pid runs and its command line mentions `must_contain` (guards against pid reuse)."""
    return pid > 0 and any(must_contain in arg for arg in cmdline(pid))


def find(predicate: Callable[[list[str]], bool]) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            args = cmdline(int(entry.name))
            if args and predicate(args):
                pids.append(int(entry.name))
    return pids


def _reap(pid: int) -> None:
    """When this process started `pid` (tests run the lab in-process), collect it: no zombies."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop(pid: int, must_contain: str, timeout: float = 20.0) -> None:
    """SIGTERM (nspawn turns it into a clean poweroff of the container), then SIGKILL."""
    if not alive(pid, must_contain):
        _reap(pid)
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not alive(pid, must_contain):
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    while alive(pid, must_contain):
        _reap(pid)
        time.sleep(0.1)


def reap_children() -> None:
    """Collect every exited child of this process (the lab may have been started in-process)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def answers(address: str, port: int) -> bool:
    """True when something accepts TCP connections on address:port."""
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def start_daemon(argv: list[str], log: Path, address: str, port: int, what: str, timeout: float = 15) -> int:
    """Start a lab service in its own session, logging to `log`; its pid once it answers on address:port."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UserError(f"{what} exited ({proc.returncode}); see {log}")
        if answers(address, port):
            return proc.pid
        time.sleep(0.1)
    raise UserError(f"{what} did not answer on {address}:{port} within {timeout:.0f} s")
