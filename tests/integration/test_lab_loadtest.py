"""`sovinfra verify load` on the lab: an endpoint reached only through the inventory's jump host."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import testinfra
import yaml
from click.testing import CliRunner

from sovinfra.cli import cli

pytestmark = pytest.mark.lab
STUB = Path(__file__).parent.parent / "openai_stub.py"
PORT = 8011


@pytest.fixture(scope="module")
def gpu1_stub(lab_inventory: str) -> Iterator[testinfra.host.Host]:
    """The OpenAI stub served by gpu1 on its lab address, recording who connects."""
    gpu1 = testinfra.get_host("ansible://gpu1", ansible_inventory=f"{lab_inventory}/hosts.yml")
    code = base64.b64encode(STUB.read_bytes()).decode()
    gpu1.check_output(f"echo {code} | base64 -d > /root/openai_stub.py && rm -f /root/peers")
    address = gpu1.ansible.get_variables()["ansible_host"]
    gpu1.check_output(
        "systemd-run --unit=sovinfra-test-stub --collect python3 /root/openai_stub.py "
        f"--host {address} --port {PORT} --peers /root/peers --ttft 0.02 --itl 0.002"
    )
    gpu1.check_output(
        f"for i in $(seq 50); do ss -ltn | grep -q ':{PORT} ' && exit 0; sleep 0.1; done; exit 1"
    )
    yield gpu1
    gpu1.run("systemctl stop sovinfra-test-stub")


def _site_through_mirror1(lab_inventory: str, tmp: Path, known_hosts: str | None = None) -> Path:
    site = tmp / "site"
    shutil.copytree(lab_inventory, site, dirs_exist_ok=True)
    common = yaml.safe_load((site / "group_vars" / "all.yml").read_text())["ansible_ssh_common_args"]
    if known_hosts:
        common = " ".join(a if "UserKnownHostsFile" not in a else f"UserKnownHostsFile={known_hosts}"
                          for a in common.split(" "))  # fmt: skip
    (site / "host_vars").mkdir(exist_ok=True)
    (site / "host_vars" / "gpu1.yml").write_text(
        yaml.safe_dump(
            {
                "ansible_ssh_common_args": f"{common} -o ProxyJump=mirror1",
                "inference_services": [{"name": "stub", "port": PORT, "repo": "sovinfra/tiny"}],
                "inference_slo_ttft_ms": 500,
                "inference_loadtest_requests": 24,
                "inference_loadtest_output_tokens": 8,
            }
        )
    )
    return site


def test_verify_load_goes_through_the_jump_host(gpu1_stub: testinfra.host.Host, lab_inventory: str,
                                                tmp_path: Path) -> None:  # fmt: skip
    site = _site_through_mirror1(lab_inventory, tmp_path)
    result = CliRunner().invoke(cli, ["verify", "load", "-i", str(site), "--limit", "gpu1", "--json"])
    assert result.exit_code == 0, result.output
    (endpoint,) = json.loads(result.output)["endpoints"]
    mirror1 = yaml.safe_load((site / "hosts.yml").read_text())["all"]["children"]["model_mirror"]["hosts"]
    mirror1_address = mirror1["mirror1"]["ansible_host"]
    assert endpoint["passed"] and endpoint["via"] == f"{mirror1_address}:22"
    assert endpoint["summary"]["requests_ok"] == 24
    # gpu1 saw every connection arrive from mirror1, none from the control node.
    assert gpu1_stub.check_output("sort -u /root/peers").split() == [mirror1_address]


def test_an_unknown_jump_host_key_is_refused(gpu1_stub: testinfra.host.Host, lab_inventory: str,
                                             tmp_path: Path) -> None:  # fmt: skip
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    site = _site_through_mirror1(lab_inventory, tmp_path, known_hosts=str(empty))
    result = CliRunner().invoke(cli, ["verify", "load", "-i", str(site), "--limit", "gpu1"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "FAIL: jump host" in result.output and "not found in known_hosts" in result.output


def test_facts_go_through_the_same_jump_host_and_check_its_key(lab_inventory: str, tmp_path: Path) -> None:
    """The pyinfra readers honour the inventory's ProxyJump as Ansible and `verify load` do: gpu1's sshd
    sees the read arrive from mirror1; with mirror1's key unknown, the read fails with ssh's own reason."""
    site = _site_through_mirror1(lab_inventory, tmp_path)
    gpu1 = testinfra.get_host("ansible://gpu1", ansible_inventory=f"{lab_inventory}/hosts.yml")
    since = gpu1.check_output("date +%s")
    result = CliRunner().invoke(cli, ["facts", "-i", str(site), "--limit", "gpu1", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["hosts"]["gpu1"]["facts"]["kernel"]
    mirror1 = yaml.safe_load((site / "hosts.yml").read_text())["all"]["children"]["model_mirror"]["hosts"]
    mirror1_address = mirror1["mirror1"]["ansible_host"]
    accepted = gpu1.check_output(
        f"journalctl -u ssh --since @{since} -o cat | grep 'Accepted publickey' || true"
    )
    sources = {line.split(" from ")[1].split()[0] for line in accepted.splitlines()}
    assert mirror1_address in sources, accepted
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    refused = _site_through_mirror1(lab_inventory, tmp_path / "refused", known_hosts=str(empty))
    result = CliRunner().invoke(cli, ["facts", "-i", str(refused), "--limit", "gpu1", "--json"])
    assert result.exit_code == 1
    read = json.loads(result.output)["hosts"]["gpu1"]
    assert (
        not read["reachable"] and f"No host key for {mirror1_address} found in known_hosts" in read["error"]
    ), read
