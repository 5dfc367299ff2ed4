"""Check mode and rollout safety on the lab, proven against hosts made to differ from what the roles want.

- Check mode on a drifted node reports exactly the drifted tasks as changes and leaves the node as it was
  (a check mode that does nothing, or one that repairs, fails this).
- A service whose readiness gate fails on the first host stops the rollout: the second host's service is
  never restarted, and the gate gives up after its timeout.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import testinfra
from click.testing import CliRunner

from sovinfra.cli import cli

pytestmark = pytest.mark.lab
TIMESYNC = "/etc/systemd/timesyncd.conf.d/sovinfra.conf"
UNIT = "sovinfra-inference-tiny"
DROP_IN = f"/etc/systemd/system/{UNIT}.service.d/zz-never-ready.conf"


def apply(inventory: str, *args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(cli, ["apply", "-i", inventory, "--json", *args])
    return result.exit_code, json.loads(result.stdout)


def host(inventory: str, name: str) -> testinfra.host.Host:
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=f"{inventory}/hosts.yml")


def changed_tasks(doc: dict, name: str) -> set[str]:
    return {c["task"].split(" : ")[-1] for c in doc["changes"] if c["host"] == name}


@pytest.fixture
def drifted(lab_inventory: str, converged: dict) -> Iterator[testinfra.host.Host]:
    """gpu2 with a managed file edited, a managed unit stopped and a base package removed; converged
    back (and proven settled) afterwards."""
    gpu2 = host(lab_inventory, "gpu2")
    code, doc = apply(lab_inventory, "--limit", "gpu2")
    assert code == 0 and doc["hosts"]["gpu2"]["changed"] == 0, doc["changes"]  # settled before
    gpu2.check_output(f"echo '# edited by hand' >> {TIMESYNC}")
    gpu2.check_output("systemctl stop sovinfra-health.timer")
    gpu2.check_output("dpkg -r lsof")
    yield gpu2
    code, doc = apply(lab_inventory, "--limit", "gpu2")
    assert code == 0, doc["failures"]
    code, doc = apply(lab_inventory, "--limit", "gpu2")
    assert code == 0 and doc["hosts"]["gpu2"]["changed"] == 0, doc["changes"]


def test_check_mode_reports_exactly_the_drift_and_changes_nothing(
    lab_inventory: str, drifted: testinfra.host.Host
) -> None:
    before = drifted.check_output(f"sha256sum {TIMESYNC}")
    code, doc = apply(lab_inventory, "--check")
    assert code == 0, doc["failures"]
    assert changed_tasks(doc, "gpu2") == {
        "Install base packages",
        "Configure time sync",
        "Enable the textfile timer",
    }, doc["changes"]
    assert changed_tasks(doc, "gpu1") == set() and changed_tasks(doc, "mirror1") == set()
    # Untouched: the edit, the stopped timer and the missing package are all still there.
    assert drifted.check_output(f"sha256sum {TIMESYNC}") == before
    assert not drifted.service("sovinfra-health.timer").is_running
    assert not drifted.package("lsof").is_installed
    # The converge itself repairs exactly those.
    code, done = apply(lab_inventory, "--limit", "gpu2")
    assert code == 0, done["failures"]
    assert changed_tasks(done, "gpu2") == changed_tasks(doc, "gpu2")
    assert drifted.service("sovinfra-health.timer").is_running and drifted.package("lsof").is_installed


def started(node: testinfra.host.Host) -> int:
    return int(node.check_output(f"systemctl show {UNIT} -p ExecMainStartTimestampMonotonic --value"))


@pytest.fixture
def gpu1_never_ready(lab_inventory: str, converged: dict) -> Iterator[testinfra.host.Host]:
    """gpu1's engine replaced (a drop-in the roles do not own) by a process that never serves; removed and
    the services converged back afterwards."""
    gpu1 = host(lab_inventory, "gpu1")
    code, doc = apply(lab_inventory, "inference")
    assert code == 0, doc["failures"]
    never = "[Service]\\nExecStart=\\nExecStart=/bin/sleep infinity\\n"
    gpu1.check_output(f"mkdir -p {DROP_IN.rsplit('/', 1)[0]} && printf '{never}' > {DROP_IN}")
    gpu1.check_output("systemctl daemon-reload")
    yield gpu1
    gpu1.check_output(f"rm -f {DROP_IN} && systemctl daemon-reload && systemctl restart {UNIT}")
    code, doc = apply(lab_inventory, "inference")
    assert code == 0, doc["failures"]
    code, doc = apply(lab_inventory, "inference")
    assert code == 0 and doc["changes"] == [], doc["changes"]


def test_a_failed_gate_on_the_first_host_stops_the_rollout(
    lab_inventory: str, gpu1_never_ready: testinfra.host.Host
) -> None:
    gpu2 = host(lab_inventory, "gpu2")
    config = "/etc/sovinfra/inference/tiny.yaml"
    before = (started(gpu1_never_ready), started(gpu2), gpu2.check_output(f"sha256sum {config}"))
    # A setting change that restarts both hosts' services, one at a time; the gate gives up after 5 s.
    changed = ["-e", "inference_llama_cpp_batch=256", "-e", "inference_ready_timeout_s=5"]
    code, doc = apply(lab_inventory, "inference", *changed)
    assert code == 1
    gate = [f for f in doc["failures"] if f["task"].endswith("Wait for each endpoint to serve its model")]
    assert [f["host"] for f in gate] == ["gpu1"], doc["failures"]
    assert "not ready after 5 s" in gate[0]["msg"], gate
    assert started(gpu1_never_ready) > before[0]  # gpu1 was restarted onto the change ...
    # ... and gpu2 never was: same process, same config, as before the run.
    assert (started(gpu2), gpu2.check_output(f"sha256sum {config}")) == before[1:]
    assert "n_batch: 512" in gpu2.file(config).content_string
