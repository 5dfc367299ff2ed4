"""`apply --forks`: how many hosts Ansible works on at once, as the run itself reports it (ansible_forks)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sovinfra.ansible import runner
from tests.conftest import ROOT

PLAYBOOK = ROOT / "tests" / "fixtures" / "playbooks" / "forks.yml"


def apply(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    inventory = tmp / "site"
    inventory.mkdir(exist_ok=True)
    (inventory / "hosts.yml").write_text(
        "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
        '      ansible_python_interpreter: "{{ ansible_playbook_python }}"\n'
        f"  vars:\n    probe_dir: {tmp}\n"
    )
    argv = ["apply", str(PLAYBOOK), "-i", str(inventory), *args]
    return subprocess.run([sys.executable, "-m", "sovinfra", *argv], cwd=ROOT, capture_output=True, text=True)


@pytest.mark.parametrize(("args", "forks"), [((), runner.MIN_FORKS), (("--forks", "3"), 3)])
def test_forks_reach_the_run(tmp_path: Path, args: tuple[str, ...], forks: int) -> None:
    proc = apply(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "forks").read_text() == str(forks)


def test_forks_below_one_are_refused_before_any_run(tmp_path: Path) -> None:
    proc = apply(tmp_path, "--forks", "0")
    assert proc.returncode == 2
    assert "--forks" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "forks").exists()
