"""The site watched, on the lab: Prometheus on mirror1 scrapes every host's node_exporter on its site
address, loads the repository's alert rules, sees a GPU fault the health agent reports and fires on it."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from sovinfra.lab import manager
from sovinfra.lab.state import LabState
from tests.conftest import ROOT
from tests.integration.conftest import set_gpu

pytestmark = pytest.mark.lab

RULES = ROOT / "sovinfra" / "health" / "alerts.yml"
AGENT = "systemctl start sovinfra-health.service"


def on(host: str, command: str) -> str:
    return subprocess.run(
        [*manager.ssh_argv(host), command], capture_output=True, text=True, check=True
    ).stdout


def api(lab: LabState, path: str, **query: str) -> Any:
    """Prometheus' HTTP API on mirror1's site address (the only address it listens on)."""
    url = f"http://{lab.hosts['mirror1'].address}:9090/api/v1/{path}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    with urllib.request.urlopen(url, timeout=10) as response:
        doc = json.load(response)
    assert doc["status"] == "success", doc
    return doc["data"]


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 150.0) -> Any:
    """Poll until `probe` answers something truthy (Prometheus scrapes and evaluates every 30 s)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = probe()
        if answer:
            return answer
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not seen within {timeout:.0f} s (last answer: {answer!r})")
        time.sleep(2)


@pytest.fixture
def agent_rerun() -> Iterator[None]:
    """After the test (and after gpus_restored put the GPUs back), the nodes' textfiles say so again."""
    yield
    for host in ("gpu1", "gpu2"):
        on(host, AGENT)


def test_every_host_is_scraped_on_its_site_address(lab: LabState, converged: dict) -> None:
    def targets() -> dict[tuple[str, str], str]:
        return {
            (t["labels"]["job"], t["labels"]["instance"]): t["health"]
            for t in api(lab, "targets")["activeTargets"]
        }

    expected = {
        ("prometheus", "mirror1"),
        ("gpu_nodes", "gpu1"),
        ("gpu_nodes", "gpu2"),
        ("hosts", "mirror1"),
        ("inference_gateway", "mirror1"),
    }
    seen = wait_for("every target up", lambda: (t := targets()) and all(h == "up" for h in t.values()) and t)
    assert set(seen) == expected
    # Nothing listens wider than the site address.
    for name, port in (
        ("gpu1", 9100),
        ("gpu2", 9100),
        ("mirror1", 9100),
        ("mirror1", 9090),
        ("mirror1", 8405),
    ):
        listening = on(name, f"ss -Hltn 'sport = :{port}'").split()
        assert f"{lab.hosts[name].address}:{port}" in listening, (name, listening)
        assert not {f"0.0.0.0:{port}", f"*:{port}", f"[::]:{port}"} & set(listening), (name, listening)


def test_the_repository_rules_are_loaded(lab: LabState, converged: dict) -> None:
    want = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    loaded = {r["name"] for g in api(lab, "rules")["groups"] for r in g["rules"]}
    assert loaded == want


def test_inference_units_are_watched(lab: LabState, converged: dict) -> None:
    """node_exporter's systemd collector exports each inference service's state (InferenceServiceDown)."""
    units = {
        line.split()[0]
        for line in on("gpu1", "systemctl list-units --plain --no-legend 'sovinfra-inference-*'").splitlines()
    }
    assert units, "the lab's gpu1 runs no inference service"

    def active() -> set[str]:
        query = 'node_systemd_unit_state{instance="gpu1",name=~"sovinfra-inference-.+",state="active"} == 1'
        return {r["metric"]["name"] for r in api(lab, "query", query=query)["result"]}

    assert wait_for("the inference units' state", lambda: active() == units and active()) == units


def test_a_gpu_fault_reaches_prometheus_and_fires_its_alert(
    lab: LabState, converged: dict, agent_rerun: None, gpus_restored: None
) -> None:
    set_gpu("gpu1", "fault-ecc-uncorrectable")
    on("gpu1", AGENT)

    def errors() -> list[dict[str, Any]]:
        query = 'sovinfra_gpu_ecc_volatile_uncorrected_errors{instance="gpu1"} > 0'
        return api(lab, "query", query=query)["result"]

    bad = wait_for("gpu1's uncorrectable ECC errors", errors)
    assert {r["metric"]["job"] for r in bad} == {"gpu_nodes"}

    def firing() -> list[dict[str, Any]]:
        return [
            a
            for a in api(lab, "alerts")["alerts"]
            if a["labels"]["alertname"] == "GPUUncorrectableMemoryErrors" and a["state"] == "firing"
        ]

    alerts = wait_for("GPUUncorrectableMemoryErrors firing", firing)
    assert {(a["labels"]["instance"], a["labels"]["severity"]) for a in alerts} == {("gpu1", "page")}
    assert {a["labels"]["serial"] for a in alerts} == {r["metric"]["serial"] for r in bad}
    # gpu2 is scraped the same way and reports none: it is measured, not merely absent.
    gpu2 = api(lab, "query", query='sovinfra_gpu_ecc_volatile_uncorrected_errors{instance="gpu2"}')["result"]
    assert gpu2 and {r["value"][1] for r in gpu2} == {"0"}
