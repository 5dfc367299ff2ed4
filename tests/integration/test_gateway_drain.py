"""Draining and returning a replica of the site endpoint: the role's own haproxy.cfg run by a real HAProxy
on loopback, two replicas (small HTTP servers), the project's Ansible module run by real Ansible.

- drained: no new request reaches it, a request running on it finishes, it stays out through a reload;
- ready: it comes back only once its health check passes (a dead replica stays out, the call fails);
- check mode says what would change and changes nothing;
- no HAProxy running: a failure, unless told it is nothing to change (a gateway not converged yet).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sovinfra import paths
from sovinfra.inference.gateway import routes
from tests.conftest import missing
from tests.unit.test_inference_gateway import render, svc

PORTS = {"gpu1": 18181, "gpu2": 18182}
FRONT = 18180


class Replica(http.server.ThreadingHTTPServer):
    """Answers its health check (GET /v1/models) and completions, which say which replica answered; a
    prompt "slow S" takes S seconds."""

    def __init__(self, name: str, port: int) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.answer({"data": [{"id": "tiny"}]})

            def do_POST(self) -> None:
                prompt = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["prompt"]
                if prompt.startswith("slow "):
                    time.sleep(float(prompt.split()[1]))
                self.answer({"choices": [{"text": "ok"}], "replica": name})

            def answer(self, doc: dict) -> None:
                body = json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", port), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # health checks hang up early

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class Gateway:
    def __init__(self, tmp: Path) -> None:
        self.dir = tmp
        self.socket = str(tmp / "admin.sock")
        self.state_file = str(tmp / "server-state")
        table = routes({n: ("127.0.0.1", [svc("tiny", p, "tiny", key=None)]) for n, p in PORTS.items()})
        cfg = render(
            table,
            inference_gateway_listen=f"127.0.0.1:{FRONT}",
            inference_gateway_metrics_listen="127.0.0.1:18185",
            inference_gateway_check_interval_s=1,
            __inference_gateway_admin_socket=self.socket,
            __inference_gateway_state_file=self.state_file,
        )
        self.cfg = tmp / "haproxy.cfg"
        self.cfg.write_text(cfg)
        self.pidfile = tmp / "haproxy.pid"
        self.replicas = {n: Replica(n, p) for n, p in PORTS.items()}
        self.start()

    def start(self, *extra: str) -> None:
        subprocess.run(
            ["haproxy", "-q", "-D", "-p", str(self.pidfile), "-f", str(self.cfg), *extra], check=True
        )

    def reload(self) -> None:
        """As the role's handler does: the replicas' state saved, then a new process loads it."""
        assert module("saved", "")["changed"] is False
        self.start("-sf", self.pidfile.read_text().split()[0])
        time.sleep(0.5)

    def stop(self) -> None:
        for pid in self.pidfile.read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), 15)


GATEWAY: list[Gateway] = []


def module(state: str, server: str, check: bool = False, **args: object) -> dict:
    """The module through ansible, on this host (the gateway)."""
    gw = GATEWAY[0] if GATEWAY else None
    params = {"state": state, **({"socket": gw.socket, "state_file": gw.state_file} if gw else {}), **args}
    if server:
        params["server"] = server
    argv = ["ansible", "localhost", "-c", "local", "-m", "sovinfra_haproxy_server", "-a", json.dumps(params),
            "-o", *(["--check"] if check else [])]  # fmt: skip
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(paths.project_root() / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "oneline",
    }
    out = subprocess.run(argv, capture_output=True, text=True, env=env).stdout
    result = json.loads(out.split("=>", 1)[1])
    result["failed"] = "| FAILED" in out
    return result


def complete(prompt: str = "hi") -> tuple[int, str]:
    """A completion through the gateway: (status, the replica that answered)."""
    body = json.dumps({"model": "tiny", "prompt": prompt}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{FRONT}/v1/completions", data=body)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=20) as response:
        return response.status, json.loads(response.read())["replica"]


def served_by() -> str:
    return complete()[1]


def spread(n: int = 10) -> set[str]:
    return {served_by() for _ in range(n)}


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    if not shutil.which("haproxy"):
        missing("haproxy is not installed (run scripts/setup)")
    if os.geteuid() != 0:
        missing("HAProxy's configuration chroots and changes user: root")
    gw = Gateway(tmp_path)
    GATEWAY[:] = [gw]
    try:
        deadline = time.monotonic() + 10
        while spread() != {"gpu1", "gpu2"} and time.monotonic() < deadline:
            time.sleep(0.5)
        yield gw
    finally:
        gw.stop()
        for r in gw.replicas.values():
            r.stop()


def test_a_drained_replica_finishes_its_requests_and_takes_no_new_ones(gateway: Gateway) -> None:
    finished: dict[str, float] = {}

    def slow() -> tuple[int, str]:
        answer = complete("slow 4")
        finished[answer[1]] = time.monotonic()
        return answer

    with ThreadPoolExecutor(2) as pool:
        running = [pool.submit(slow) for _ in range(2)]
        time.sleep(0.5)  # one on each replica (least connections)
        drained = module("drained", "gpu1")
        returned = time.monotonic()
        assert drained["changed"] and drained["backends"] == {"model_tiny": "maint"}, drained
        assert sorted(f.result() for f in running) == [(200, "gpu1"), (200, "gpu2")]
    assert drained["seconds"] >= 1.0 and finished["gpu1"] <= returned  # it waited for the request
    assert spread() == {"gpu2"}
    assert module("drained", "gpu1")["changed"] is False  # already out
    # A reload (as the role's handler does it) keeps it out.
    gateway.reload()
    assert spread() == {"gpu2"}
    assert module("read", "gpu1")["backends"] == {"model_tiny": "maint"}


def test_a_replica_returns_only_once_its_health_check_passes(gateway: Gateway) -> None:
    assert module("drained", "gpu1")["changed"]
    # Check mode: says it would return it, and leaves it out.
    assert module("ready", "gpu1", check=True)["changed"] is True
    assert module("read", "gpu1")["backends"] == {"model_tiny": "maint"}
    # Its server dead: not returned; it stays out and every request still succeeds on gpu2.
    gateway.replicas["gpu1"].stop()
    failed = module("ready", "gpu1", up_timeout=3)
    assert failed["failed"] and "health check has not passed after 3 s" in failed["msg"], failed
    assert spread() == {"gpu2"}
    # Back up: returned once checks pass, and takes requests again.
    gateway.replicas["gpu1"] = Replica("gpu1", PORTS["gpu1"])
    returned = module("ready", "gpu1", up_timeout=15)
    assert returned["changed"] and returned["backends"] == {"model_tiny": "up"}, returned
    assert spread(20) == {"gpu1", "gpu2"}


def test_no_haproxy_is_a_failure_unless_absent_is_ok(tmp_path: Path) -> None:
    GATEWAY.clear()
    nowhere = str(tmp_path / "admin.sock")
    failed = module("drained", "gpu1", socket=nowhere)
    assert failed["failed"] and "cannot talk to HAProxy" in failed["msg"], failed
    quiet = module("drained", "gpu1", socket=nowhere, absent_ok=True)
    assert not quiet["failed"] and quiet["changed"] is False and "not answering" in quiet["msg"], quiet
