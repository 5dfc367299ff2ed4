"""The alert rules, checked and tested with Prometheus' own promtool (Debian's prometheus package), on
series made from a real node's health textfile (the device run's) and from the agent's own renderer."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import FIXTURES, ROOT, missing

RULES = ROOT / "sovinfra" / "health" / "alerts.yml"
SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")


@pytest.fixture(scope="module")
def promtool() -> str:
    tool = shutil.which("promtool")
    if not tool:
        missing("promtool is not installed (scripts/setup installs Debian's prometheus package)")
    return str(tool)


def series_of(textfile: str, instance: str, values: str) -> list[dict[str, str]]:
    """A node_exporter textfile's samples as promtool input series of one instance (each sample's own value,
    or `values` with {v} for it)."""
    out = []
    for line in textfile.splitlines():
        sample = SAMPLE.match(line)
        if not sample:
            continue
        labels = ",".join(filter(None, [sample["labels"], f'instance="{instance}"']))
        out.append({"series": f"{sample['name']}{{{labels}}}", "values": values.format(v=sample["value"])})
    return out


def annotations(name: str, labels: dict[str, str]) -> dict[str, str]:
    """The rule's annotations as Prometheus expands them for these labels (promtool compares them)."""
    rules = {r["alert"]: r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    fill = lambda text: re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m[1]], text)  # noqa: E731
    return {k: fill(v) for k, v in rules[name]["annotations"].items()}


def promtool_test(promtool: str, tmp_path: Path, series: list[dict], cases: list[dict]) -> None:
    """promtool's own rule unit test: these input series (1 m apart), these alerts at these times."""
    doc = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": cases}],
    }
    test_file = tmp_path / "rules_test.yml"
    test_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    done = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True)
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


def test_the_rules_are_valid(promtool: str) -> None:
    done = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert done.returncode == 0 and "SUCCESS: 12 rules found" in done.stdout, done.stdout + done.stderr


def test_the_rules_fire_on_what_the_agent_writes(promtool: str, tmp_path: Path) -> None:
    real = (FIXTURES / "real_nvml" / "h100_sxm_vm_idle_health.prom").read_text()
    assert "sovinfra_gpu_health_status 2" in real  # the device run's VM: NVLink state unreadable then
    healthy = real.replace("sovinfra_gpu_health_status 2", "sovinfra_gpu_health_status 0")
    healthy = re.sub(r"(sovinfra_gpu_check_severity\{[^}]*\}) [12]", r"\1 0", healthy)
    xid = healthy.replace(
        'check="xid",serial="REDACTED0001",bus_id="00000000:00:06.0"} 0',
        'check="xid",serial="REDACTED0001",bus_id="00000000:00:06.0"} 2',
    )
    series = [
        *series_of(real, "gpu-real", "{v}x60"),  # unhealthy for an hour
        *series_of(healthy, "gpu-ok", "{v}x60"),
        *series_of(xid, "gpu-xid", "{v}x60"),
        {"series": 'sovinfra_gpu_count{instance="gpu-lost"}', "values": "8x20 7x40"},  # one lost at 20m
        {"series": 'up{job="gpu_nodes",instance="gpu-quiet"}', "values": "1x60"},  # no health metrics at all
        {"series": 'up{job="gpu_nodes",instance="gpu-ok"}', "values": "1x60"},
        {"series": 'sovinfra_acceptance_verdict{instance="control"}', "values": "0x10 2x50"},
        {"series": 'up{job="hosts",instance="mirror1"}', "values": "1x10 0x50"},  # gone at 10m
        {"series": 'up{job="prometheus",instance="mirror1"}', "values": "0x60"},  # not a node's job
        # node_exporter's systemd collector, one series per state: llama stops at 20m, vllm keeps running,
        # the agent's oneshot is inactive between runs (not an inference service)
        *[
            {
                "series": f'node_systemd_unit_state{{instance="gpu-ok",name="{unit}",state="{state}"}}',
                "values": v,
            }
            for unit, state, v in [
                ("sovinfra-inference-llama.service", "active", "1x20 0x40"),
                ("sovinfra-inference-llama.service", "failed", "0x20 1x40"),
                ("sovinfra-inference-vllm.service", "active", "1x60"),
                ("sovinfra-inference-vllm.service", "failed", "0x60"),
                ("sovinfra-health.service", "active", "0x60"),
            ]
        ],
    ]

    def alerts(name: str, at: str, *labels: dict[str, str]) -> dict:
        expected = [{"exp_labels": lab, "exp_annotations": annotations(name, lab)} for lab in labels]
        return {"eval_time": at, "alertname": name, "exp_alerts": expected}

    page, ticket = {"severity": "page"}, {"severity": "ticket"}
    cases = [
        alerts("GPUNodeUnhealthy", "3m"),  # not yet: for 5m
        alerts("GPUNodeUnhealthy", "10m", {**page, "instance": "gpu-real"}),
        alerts(
            "GPUFatalXid",
            "1m",
            {**page, "instance": "gpu-xid", "serial": "REDACTED0001", "bus_id": "00000000:00:06.0"},
        ),
        alerts("GPUMissing", "15m"),
        alerts("GPUMissing", "30m", {**page, "instance": "gpu-lost"}),
        alerts("GPUHealthMetricsAbsent", "45m", {**ticket, "instance": "gpu-quiet", "job": "gpu_nodes"}),
        alerts("GPUUncorrectableMemoryErrors", "30m"),  # no node has any
        alerts("HostDown", "12m"),  # not yet: for 5m
        alerts("HostDown", "20m", {**page, "instance": "mirror1", "job": "hosts"}),
        alerts("InferenceServiceDown", "10m"),
        alerts(
            "InferenceServiceDown",
            "30m",
            {**page, "instance": "gpu-ok", "name": "sovinfra-inference-llama.service", "state": "active"},
        ),
        alerts("AcceptanceFailed", "5m"),
        alerts("AcceptanceFailed", "20m", {**ticket, "instance": "control"}),
    ]
    promtool_test(promtool, tmp_path, series, cases)


def test_the_site_endpoint_rules_fire_on_haproxy_series(promtool: str, tmp_path: Path) -> None:
    """HAProxy's exporter series as the monitoring host scrapes them (job inference_gateway): a model whose
    replicas all go, and one whose requests start failing at 10% at 60m (its neighbour stays clean)."""
    gw = 'job="inference_gateway",instance="mirror1"'
    series = [
        {"series": f'haproxy_backend_active_servers{{{gw},proxy="model_big"}}', "values": "2x30 0x90"},
        {"series": f'haproxy_backend_active_servers{{{gw},proxy="model_tiny"}}', "values": "2x120"},
        {"series": f'haproxy_backend_active_servers{{{gw},proxy="metrics"}}', "values": "0x120"},
        *[
            {"series": f'haproxy_backend_http_requests_total{{{gw},proxy="{p}"}}', "values": "0+100x120"}
            for p in ("model_tiny", "model_big")
        ],
        {
            "series": f'haproxy_backend_http_responses_total{{{gw},proxy="model_tiny",code="5xx"}}',
            "values": "0x60 10+10x60",
        },
        {
            "series": f'haproxy_backend_http_responses_total{{{gw},proxy="model_big",code="5xx"}}',
            "values": "0x120",
        },
    ]
    page, ticket = "page", "ticket"

    def firing(name: str, at: str, proxy: str | None = None, severity: str = page) -> dict:
        labels: list[dict[str, str]] = (
            [{"severity": severity, "instance": "mirror1", "proxy": proxy}] if proxy else []
        )
        if proxy and name == "ModelUnserved":
            labels[0]["job"] = "inference_gateway"
        expected = [{"exp_labels": lab, "exp_annotations": annotations(name, lab)} for lab in labels]
        return {"eval_time": at, "alertname": name, "exp_alerts": expected}

    cases = [
        firing("ModelUnserved", "31m"),  # not yet: for 2m
        firing("ModelUnserved", "40m", "model_big"),
        # 10% errors from 60m: the 1h window passes 7.2% after ~43 min of them, the 6h window 3% after ~26.
        firing("InferenceErrorBudgetBurn", "95m"),
        firing("InferenceErrorBudgetBurn", "115m", "model_tiny"),
        firing("InferenceErrorBudgetSlowBurn", "75m"),
        firing("InferenceErrorBudgetSlowBurn", "100m", "model_tiny", ticket),
    ]
    promtool_test(promtool, tmp_path, series, cases)
