"""Prometheus' configuration as the monitoring role renders it: every host's node_exporter, the engines that
serve their own metrics (vLLM; llama-cpp-python's server has none), the site endpoint."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from sovinfra.inference.plan import metrics_jobs
from tests.conftest import ROOT, missing, trusted

ROLE = ROOT / "roles" / "monitoring"
HOSTS = {
    "gpu1": (
        "10.0.0.11",
        [{"name": "tiny", "port": 8000}, {"name": "big", "port": 8001, "engine": "vllm"}],
        "llama_cpp",
    ),
    "gpu2": ("10.0.0.12", [{"name": "big", "port": 8001}], "vllm"),  # this host's default engine
    "cpu1": ("10.0.0.13", [], "vllm"),
}


def test_engines_with_metrics_are_scrape_jobs() -> None:
    assert metrics_jobs(HOSTS) == [
        {
            "job": "inference_vllm",
            "path": "/metrics",
            "targets": [
                {"target": "10.0.0.11:8001", "host": "gpu1", "service": "big"},
                {"target": "10.0.0.12:8001", "host": "gpu2", "service": "big"},
            ],
        }
    ]
    assert metrics_jobs({"gpu1": ("10.0.0.11", [{"name": "tiny", "port": 8000}], "llama_cpp")}) == []


def render() -> str:
    variables = {
        **yaml.safe_load((ROLE / "defaults" / "main.yml").read_text()),
        "__monitoring_rules_dir": "/etc/prometheus/rules",
        "__monitoring_engine_jobs": metrics_jobs(HOSTS),
        "ansible_managed": "managed",
        "monitoring_listen": "10.0.0.10:9090",
        "site_node_exporter_port": 9100,
        "site_inference_gateway_metrics_port": 8405,
        "inventory_hostname": "mirror1",
        "groups": {
            "all": ["mirror1", "gpu1", "gpu2"],
            "gpu_nodes": ["gpu1", "gpu2"],
            "inference_gateway": ["mirror1"],
        },
        "hostvars": {
            h: {"ansible_host": a}
            for h, a in [("mirror1", "10.0.0.10"), ("gpu1", "10.0.0.11"), ("gpu2", "10.0.0.12")]
        },
    }
    return str(
        Templar(loader=DataLoader(), variables=variables).template(
            trusted((ROLE / "templates" / "prometheus.yml.j2").read_text())
        )
    )


def test_the_configuration_scrapes_nodes_engines_and_the_gateway(tmp_path: Path) -> None:
    config = yaml.safe_load(render())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) == {"prometheus", "gpu_nodes", "hosts", "inference_vllm", "inference_gateway"}
    vllm = jobs["inference_vllm"]
    assert vllm["metrics_path"] == "/metrics"
    assert [(s["targets"], s["labels"]) for s in vllm["static_configs"]] == [
        (["10.0.0.11:8001"], {"instance": "gpu1", "service": "big"}),
        (["10.0.0.12:8001"], {"instance": "gpu2", "service": "big"}),
    ]
    promtool = shutil.which("promtool")
    if not promtool:
        missing("promtool is not installed (scripts/setup installs Debian's prometheus package)")
    (tmp_path / "prometheus.yml").write_text(
        render().replace("/etc/prometheus/rules/*.yml", str(tmp_path / "none*.yml"))
    )
    done = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
