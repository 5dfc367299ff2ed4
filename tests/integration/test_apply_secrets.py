"""Secrets never reach what an operator sees: `apply`'s JSON and text output, its stderr and Ansible's log,
for a vaulted inventory value, an `-e` value and the vault password, through tasks that fail with them
(no_log, and a loop shown by its label)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ansible.parsing.vault import VaultLib, VaultSecret

from tests.conftest import ROOT

KEY = "sk-vaulted-5d1e0b"
EXTRA = "tok-extra-93c4aa"
PASSWORD = "pw-vault-2b77f1"
PLAYBOOK = ROOT / "tests" / "fixtures" / "playbooks" / "secret_output.yml"


def site(tmp: Path) -> tuple[Path, Path]:
    inventory = tmp / "site"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "hosts.yml").write_text(
        "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
        '      ansible_python_interpreter: "{{ ansible_playbook_python }}"\n'
    )
    secret = VaultLib([("default", VaultSecret(PASSWORD.encode()))]).encrypt(KEY).decode()
    vaulted = "probe_key: !vault |\n" + "".join(f"  {line}\n" for line in secret.splitlines())
    (inventory / "group_vars" / "all.yml").write_text(vaulted + f"probe_dir: {tmp}\n")
    password = tmp / "vault-pass"
    password.write_text(PASSWORD + "\n")
    password.chmod(0o600)
    return inventory, password


def apply(tmp: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    inventory, password = site(tmp)
    log = tmp / "ansible.log"
    env = {**os.environ, "ANSIBLE_LOG_PATH": str(log)}
    argv = ["apply", str(PLAYBOOK), "-i", str(inventory), "-e", f"probe_extra={EXTRA}"]
    argv += ["--vault-password-file", str(password), *args]
    proc = subprocess.run(
        [sys.executable, "-m", "sovinfra", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return proc, log.read_text() if log.exists() else ""


def leaks(*texts: str) -> list[str]:
    return [s for s in (KEY, EXTRA, PASSWORD) if any(s in t for t in texts)]


def test_json_output_stderr_and_log_hold_no_secret(tmp_path: Path) -> None:
    proc, log = apply(tmp_path, "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert [c["task"] for c in doc["changes"]] == ["A changed task on a secret, hidden"]
    assert (tmp_path / "key").read_text() == KEY + "\n"  # the secrets did arrive
    assert log, "Ansible wrote no log: the test would prove nothing about it"
    assert leaks(proc.stdout, proc.stderr, log) == []


def test_text_output_shows_what_failed_without_the_secret(tmp_path: Path) -> None:
    proc, log = apply(tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # The failures are shown: hidden for no_log, by its label for the loop's item.
    hidden = "A task that hides its output fails with the secret in its message: (output hidden: no_log)"
    assert f"ignored     {hidden}" in proc.stderr, proc.stderr
    assert "svc-b: service svc-b refused" in proc.stderr, proc.stderr
    assert leaks(proc.stdout, proc.stderr, log) == []
