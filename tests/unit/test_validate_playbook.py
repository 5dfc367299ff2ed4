"""validate.yml (run first by plain ansible-playbook) and `sovinfra inventory check` refuse the same input.

For every role whose spec has a variable that can be judged without templating (choices, int, bool,
float, list, dict), a host carries a bad value of it: inventory check names the file and key, and
validate.yml fails that host (a real ansible-playbook run; validate_argument_spec is controller-side, so
no host is contacted).
"""

from __future__ import annotations

import re
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from sovinfra.ansible import runner, strategy
from sovinfra.errors import UserError
from sovinfra.inventory import site, specs
from tests.conftest import ROOT

BAD_BY_TYPE: dict[str, Any] = {
    "int": "many",
    "bool": "sometimes",
    "float": "lots",
    "list": {"not": "a list"},
    "dict": ["not", "a", "mapping"],
}


def bad_value(spec: dict[str, Any]) -> Any:
    if spec.get("choices"):
        return "not-one-of-the-choices"
    return BAD_BY_TYPE.get(str(spec.get("type")))


def judgeable() -> dict[str, tuple[str, Any]]:
    """role -> (variable, bad value) for every role that has such a variable."""
    found: dict[str, tuple[str, Any]] = {}
    for role, options in specs.role_options(ROOT / "roles").items():
        for name, spec in sorted(options.items()):
            value = bad_value(spec or {})
            if value is not None:
                found[role] = (name, value)
                break
    return found


CASES = judgeable()


def write_site(directory: Path, bad: dict[str, tuple[str, Any]]) -> Path:
    hosts = {f"h-{role.replace('_', '-')}": {"ansible_host": "127.0.0.1"} for role in bad}
    directory.mkdir(parents=True)
    doc = {"all": {"children": {"gpu_nodes": {"hosts": hosts}, "model_mirror": {"hosts": {"m1": None}}}}}
    (directory / "hosts.yml").write_text(yaml.safe_dump(doc))
    (directory / "host_vars").mkdir()
    for role, (name, value) in bad.items():
        (directory / "host_vars" / f"h-{role.replace('_', '-')}.yml").write_text(
            yaml.safe_dump({name: value})
        )
    return directory


def test_every_role_with_a_judgeable_variable_is_covered() -> None:
    """Roles left out declare only free-form values (str, path, raw) that no check can refuse."""
    for role, options in specs.role_options(ROOT / "roles").items():
        if role not in CASES:
            kinds = {str((spec or {}).get("type", "str")) for spec in options.values()}
            assert kinds <= {"str", "path", "raw"}, (role, kinds)
    assert len(CASES) >= 10


@pytest.mark.parametrize("role", sorted(CASES))
def test_inventory_check_refuses_each_roles_bad_value(tmp_path: Path, role: str) -> None:
    name, _ = CASES[role]
    with pytest.raises(UserError) as err:
        site.load_checked(write_site(tmp_path / "site", {role: CASES[role]}))
    assert name in str(err.value) and f"h-{role.replace('_', '-')}.yml" in str(err.value)


def test_validate_playbook_refuses_the_same_bad_values(tmp_path: Path) -> None:
    inventory = write_site(tmp_path / "site", CASES)
    # A value that refers to a role default is left to that role, as inventory check leaves templates.
    # So is a vaulted value when no vault password is given (the role that needs it asks for it).
    password = tmp_path / "vault-password"
    password.write_text("not-the-labs\n")
    vaulted = subprocess.run(
        [
            "ansible-vault",
            "encrypt_string",
            "--vault-password-file",
            str(password),
            "sk-123",
            "--name",
            "api_key",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    service = "inference_services:\n  - name: a\n    port: 8000\n    repo: o/m\n" + textwrap.indent(
        vaulted, "    "
    )
    (inventory / "host_vars" / "m1.yml").write_text(
        "nvidia_container_toolkit_repo_key_url: '{{ nvidia_container_toolkit_repo_url }}/key.pub'\n"
        "base_ssh_max_auth_tries: '{{ 2 + 1 }}'\n" + service
    )
    run = runner.PlaybookRun(ROOT / "playbooks" / "validate.yml", inventory)
    result = runner.run_playbook(run, len(CASES) + 1, strategy=strategy.Strategy("linear", None))
    failed = set(result.recap.failed_hosts)
    assert failed == {f"h-{role.replace('_', '-')}" for role in CASES}, result.stderr[-2000:]
    assert "m1" in result.recap.hosts and "m1" not in failed
    messages = " ".join(str(f["msg"]) for f in result.recap.failures)
    for name, _ in CASES.values():
        assert name in messages


def test_a_play_keyword_reads_the_roles_default_not_a_copy(tmp_path: Path) -> None:
    """playbooks/inference.yml's `serial` falls back to the inference role's own default (read from its
    defaults file by a filter), and an inventory value wins: a real ansible run renders both."""
    defaults = yaml.safe_load((ROOT / "roles" / "inference" / "defaults" / "main.yml").read_text())
    play = yaml.safe_load((ROOT / "playbooks" / "inference.yml").read_text())
    serial = next(p["serial"] for p in play if "serial" in p)
    assert "sovinfra_role_default('inference_serial')" in serial
    env = runner.environment(1, strategy=strategy.Strategy("linear", None, ""))
    for extra, expected in (([], defaults["inference_serial"]), (["-e", "inference_serial=3"], 3)):
        out = subprocess.run(
            ["ansible", "localhost", "-m", "debug", "-a", f"msg={serial}", *extra],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert re.search(rf'"msg": "?{expected}"?\n', out), out
