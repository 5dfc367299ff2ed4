"""Host keys are checked by every way sovinfra reaches a host: Ansible (both strategies), the pyinfra
readers and the paramiko tunnel each refuse gpu1 when the known_hosts they are given holds another key
for it, or none; with the lab's own known_hosts they get in. The lab itself is not changed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from sovinfra import paths
from sovinfra.ansible import runner, strategy
from sovinfra.cli import cli
from sovinfra.errors import UserError
from sovinfra.lab.state import LabState
from sovinfra.loadtest.targets import Jump
from sovinfra.loadtest.tunnel import Tunnel
from tests.conftest import ROOT

pytestmark = pytest.mark.lab
PING = ROOT / "tests" / "fixtures" / "playbooks" / "ping.yml"
REFUSED = (
    "Host key verification failed",  # ssh, under the linear strategy
    "HOST IDENTIFICATION HAS CHANGED",
    "SSH reported an unrecognized or mismatching host key",  # Mitogen
)


def inventory_with_known_hosts(tmp: Path, known_hosts: Path) -> Path:
    """A copy of the lab's inventory whose ssh arguments name another known_hosts file."""
    copy = tmp / "inventory"
    shutil.copytree(paths.lab_inventory_dir(), copy)
    all_vars = copy / "group_vars" / "all.yml"
    lab_known = str(paths.lab_dir() / "known_hosts")
    text = all_vars.read_text()
    assert lab_known in text
    all_vars.write_text(text.replace(lab_known, str(known_hosts)))
    return copy


def known_hosts_variants(tmp: Path, lab: LabState) -> dict[str, Path]:
    lab_known = (paths.lab_dir() / "known_hosts").read_text().splitlines()
    address = lab.hosts["gpu1"].address
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / "other")], check=True)
    other = (tmp / "other.pub").read_text().split()[:2]
    changed = [
        f"{address} {' '.join(other)}" if line.startswith(address + " ") else line for line in lab_known
    ]
    variants = {
        "changed": [*changed],
        "unknown": [line for line in lab_known if not line.startswith(address + " ")],
        "lab": lab_known,
    }
    files = {}
    for name, lines in variants.items():
        files[name] = tmp / f"known_hosts.{name}"
        files[name].write_text("\n".join(lines) + "\n")
    return files


def fresh_connections(tmp: Path) -> dict[str, str]:
    """A control-socket directory of the test's own: ssh would otherwise reuse a master connection an
    earlier run opened (ControlPersist), which checked the key when it was opened, not now."""
    sockets = tmp / "cp"
    sockets.mkdir()
    return {"ANSIBLE_SSH_CONTROL_PATH_DIR": str(sockets)}


@pytest.fixture(scope="module")
def variants(lab: LabState, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    tmp = tmp_path_factory.mktemp("host-keys")
    files = known_hosts_variants(tmp, lab)
    result = {}
    for name, known in files.items():
        (tmp / name).mkdir()
        result[name] = (known, inventory_with_known_hosts(tmp / name, known))
    return result


@pytest.mark.parametrize("kind", ["changed", "unknown"])
@pytest.mark.parametrize("chosen", ["mitogen", "linear"])
def test_ansible_refuses_a_wrong_or_missing_host_key(
    variants: dict[str, tuple[Path, Path]],
    kind: str,
    chosen: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    _, inventory = variants[kind]
    run = runner.PlaybookRun(PING, inventory, limit="gpu1")
    monkeypatch.setenv("ANSIBLE_HOST_KEY_CHECKING", "False")  # the caller's shell saying so changes nothing
    result = runner.run_playbook(
        run, 1, env_overrides=fresh_connections(tmp_path), strategy=strategy.for_run(chosen)
    )
    assert result.recap.hosts["gpu1"].unreachable == 1, result.recap
    said = " ".join(f["msg"] for f in result.recap.failures) + result.stderr
    assert any(reason in said for reason in REFUSED), said[-2000:]


@pytest.mark.parametrize("chosen", ["mitogen", "linear"])
def test_ansible_gets_in_with_the_right_key(
    variants: dict[str, tuple[Path, Path]], chosen: str, tmp_path: Path
) -> None:
    _, inventory = variants["lab"]
    run = runner.PlaybookRun(PING, inventory, limit="gpu1")
    result = runner.run_playbook(
        run, 1, env_overrides=fresh_connections(tmp_path), strategy=strategy.for_run(chosen)
    )
    assert result.ok and result.recap.hosts["gpu1"].ok == 1, (result.recap, result.stderr[-2000:])


@pytest.mark.parametrize("kind", ["changed", "unknown"])
def test_pyinfra_readers_refuse_a_wrong_or_missing_host_key(
    variants: dict[str, tuple[Path, Path]], kind: str
) -> None:
    _, inventory = variants[kind]
    refused = CliRunner().invoke(cli, ["facts", "-i", str(inventory), "--limit", "gpu1", "--json"])
    assert refused.exit_code == 1, refused.output
    assert json.loads(refused.stdout)["hosts"]["gpu1"]["reachable"] is False
    good = CliRunner().invoke(cli, ["facts", "-i", str(variants["lab"][1]), "--limit", "gpu1", "--json"])
    assert good.exit_code == 0, good.output
    assert json.loads(good.stdout)  # the same read, with the right key, works


@pytest.mark.parametrize("kind", ["changed", "unknown"])
def test_paramiko_tunnel_refuses_a_wrong_or_missing_host_key(
    lab: LabState, variants: dict[str, tuple[Path, Path]], kind: str
) -> None:
    address = lab.hosts["gpu1"].address
    key = str(paths.lab_dir() / "id_ed25519")

    def jump(known: Path) -> Jump:
        return Jump(host=address, port=22, user="root", key_file=key, known_hosts=str(known))

    with pytest.raises(UserError, match=address), Tunnel(jump(variants[kind][0]), ("127.0.0.1", 22)):
        pass
    with Tunnel(jump(variants["lab"][0]), ("127.0.0.1", 22)) as tunnel:
        assert tunnel.local_port > 0
