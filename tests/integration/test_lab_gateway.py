"""The site endpoint on the lab's mirror host: one base URL routing by model to both GPU nodes, keys checked
at the edge, streaming, a replica taken out when its health check fails and put back when it recovers."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner

from sovinfra.cli import cli
from sovinfra.lab import cgroups, config, manager
from sovinfra.lab import model as lab_model
from tests import openai_http

pytestmark = pytest.mark.lab

GATEWAY = "http://10.213.7.10:4000"
UNIT = "sovinfra-inference-tiny"


@pytest.fixture(scope="module")
def key(lab_inventory: str, converged: dict) -> str:
    # Whatever state the lab is in: a converge of the services and the endpoint waits until every replica
    # serves (each node's readiness gate).
    result = CliRunner().invoke(cli, ["apply", "inference", "-i", lab_inventory])
    assert result.exit_code == 0, result.output
    return lab_model.api_key(Path(lab_inventory))


def call(path: str, key: str | None, body: dict | None = None, timeout: float = 30.0) -> tuple[int, bytes]:
    return openai_http.call(GATEWAY + path, key, body, timeout)


def complete(key: str, max_tokens: int = 8) -> int:
    status, _ = call(
        "/v1/completions", key, {"model": "tiny", "prompt": "the rack", "max_tokens": max_tokens}
    )
    return status


def servers(state: str = "") -> dict[str, dict[str, str]]:
    """HAProxy's own view of the tiny model's replicas (its admin socket on the mirror host)."""
    ask = (
        "import socket; s = socket.socket(socket.AF_UNIX); s.connect('/run/haproxy/admin.sock'); "
        "s.sendall(b'show stat\\n'); print(b''.join(iter(lambda: s.recv(65536), b'')).decode())"
    )
    out = subprocess.run(
        [*manager.ssh_argv("mirror1"), f'python3 -c "{ask}"'], capture_output=True, text=True
    )
    lines = out.stdout.lstrip("# ").splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
    return {r["svname"]: r for r in rows if r["pxname"] == "model_tiny" and r["svname"] in ("gpu1", "gpu2")}


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def test_one_base_url_lists_routes_and_refuses_at_the_edge(key: str) -> None:
    status, body = call("/v1/models", key)
    assert status == 200 and [m["id"] for m in json.loads(body)["data"]] == ["tiny"]
    assert call("/v1/models", "wrong")[0] == 401 and call("/v1/models", None)[0] == 401
    before = {name: int(row["stot"]) for name, row in servers().items()}
    assert call("/v1/completions", "wrong", {"model": "tiny", "prompt": "x", "max_tokens": 2})[0] == 401
    status, body = call("/v1/completions", key, {"model": "nope", "prompt": "x", "max_tokens": 2})
    assert status == 404 and json.loads(body)["error"]["code"] == "model_not_found"
    assert {name: int(row["stot"]) for name, row in servers().items()} == before  # refused at the edge
    # Least connections over both replicas: 8 at once reach both nodes.
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(lambda _: complete(key), range(8))) == [200] * 8
    after = {name: int(row["stot"]) for name, row in servers().items()}
    assert all(after[name] > before[name] for name in ("gpu1", "gpu2")), (before, after)


def spread(url: str, key: str) -> float:
    """Seconds between the first and the last chunk of one streamed completion (a fresh prompt each time:
    no cached prefix makes one faster than the other)."""
    prompt = f"the rack {time.monotonic_ns()}"
    body = json.dumps({"model": "tiny", "prompt": prompt, "max_tokens": 64, "stream": True}).encode()
    request = urllib.request.Request(url + "/v1/completions", data=body)
    request.add_header("Authorization", f"Bearer {key}")
    request.add_header("Content-Type", "application/json")
    arrivals = []
    start = time.monotonic()
    with urllib.request.urlopen(request, timeout=60) as response:
        for line in response:
            if line.startswith(b"data: {"):
                arrivals.append(time.monotonic() - start)
    assert len(arrivals) >= 10, arrivals
    return arrivals[-1] - arrivals[0]


def test_it_streams_as_the_engine_generates(key: str) -> None:
    """Chunks reach the client spread as the engine writes them, as they do straight from a node: a proxy
    that gathers them delivers a whole completion within a millisecond at its end."""
    direct = min(spread("http://10.213.7.11:8000", key) for _ in range(3))
    through = [spread(GATEWAY, key) for _ in range(3)]
    assert min(through) > max(direct * 0.3, 0.003), (direct, through)


def test_a_failed_replica_is_taken_out_and_put_back(key: str, lab_inventory: str) -> None:
    gpu1 = [*manager.ssh_argv("gpu1")]
    subprocess.run([*gpu1, f"systemctl stop {UNIT}"], check=True)
    try:
        assert wait_for(lambda: servers()["gpu1"]["status"].startswith("DOWN")), servers()
        assert servers()["gpu2"]["status"] == "UP"
        # With gpu1 out, every request is served (by gpu2).
        assert [complete(key, 4) for _ in range(10)] == [200] * 10
    finally:
        subprocess.run([*gpu1, f"systemctl start {UNIT}"], check=True)
    assert wait_for(lambda: servers()["gpu1"]["status"] == "UP", timeout=120), servers()


def cpu_cgroup(pid: int) -> str:
    """The process's cgroup in the cpu controller's hierarchy, after checking the lab's weight there."""
    lines = [line.split(":", 2) for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()]
    v1 = [(c, g) for _, c, g in lines if "cpu" in c.split(",")]
    if v1:
        (controllers, group) = v1[0]
        shares = Path("/sys/fs/cgroup", controllers, config.CGROUP_NAME, "cpu.shares")
        assert shares.read_text().strip() == str(cgroups.CPU_SHARES)
        return group
    # cgroup v2: one hierarchy; the weight only where its cpu controller is enabled for children
    weight = Path("/sys/fs/cgroup", config.CGROUP_NAME, "cpu.weight")
    assert not weight.exists() or weight.read_text().strip() == str(cgroups.CPU_WEIGHT)
    return lines[0][2]


def test_verify_load_tests_the_site_endpoint_by_default(lab_inventory: str, key: str) -> None:
    """`verify load`: each node, then the site endpoint, every request served and every SLO met. The lab's
    hosts weigh less on the CPU than the control node (sovinfra.lab.cgroups), so the load client keeps up
    while both nodes generate at once: no verdict is excused as the client's."""
    # Every engine runs in its host's CPU cgroup, under the lab's weight.
    engines = subprocess.run(["pgrep", "-f", "llama_cpp.server"], capture_output=True, text=True)
    groups = sorted(cpu_cgroup(int(pid)) for pid in engines.stdout.split())
    assert [g.split("/")[1:3] for g in groups] == [[config.CGROUP_NAME, "gpu1"], [config.CGROUP_NAME, "gpu2"]]
    result = CliRunner().invoke(cli, ["verify", "load", "-i", lab_inventory, "--json"])
    endpoints = json.loads(result.stdout)["endpoints"]
    assert [(e["host"], e["service"], e["url"]) for e in endpoints] == [
        ("gpu1", "tiny", "http://10.213.7.11:8000"),
        ("gpu2", "tiny", "http://10.213.7.12:8000"),
        ("mirror1", "site:tiny", GATEWAY),
    ]
    assert all(e["summary"]["requests_ok"] == e["summary"]["requests"] > 0 for e in endpoints), endpoints
    assert result.exit_code == 0 and all(e["passed"] for e in endpoints), [e["reasons"] for e in endpoints]
    # The gateway alone (still with every node's models); the nodes alone, when told.
    result = CliRunner().invoke(cli, ["verify", "load", "-i", lab_inventory, "--limit", "mirror1", "--json"])
    assert [e["service"] for e in json.loads(result.stdout)["endpoints"]] == ["site:tiny"]
    args = ["verify", "load", "-i", lab_inventory, "--no-site-endpoint", "--json"]
    result = CliRunner().invoke(cli, args)
    assert [e["host"] for e in json.loads(result.stdout)["endpoints"]] == ["gpu1", "gpu2"]


def test_it_listens_on_the_site_address_only(key: str) -> None:
    listening = subprocess.run(
        [*manager.ssh_argv("mirror1"), "ss -Hltn 'sport = :4000'"], capture_output=True, text=True, check=True
    ).stdout
    assert [line.split()[3] for line in listening.splitlines()] == ["10.213.7.10:4000"]
