"""Extra vars (an API key among them) reach ansible-playbook through a private file, never its argv."""

from __future__ import annotations

from pathlib import Path

from sovinfra.ansible import runner
from tests.conftest import ROOT

SECRET = "sk-probe-7f3a9c"


def test_extra_vars_travel_in_a_private_file_not_argv(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
        '      ansible_python_interpreter: "{{ ansible_playbook_python }}"\n'
    )
    run = runner.PlaybookRun(
        ROOT / "tests" / "fixtures" / "playbooks" / "secret_argv.yml",
        inventory,
        extra_vars={"probe_secret": SECRET, "expected_secret": SECRET},
    )
    assert not any(SECRET in arg for arg in runner.command(run, tmp_path / "extra-vars.json"))
    result = runner.run_playbook(run, 1)
    assert result.ok, (result.recap.failures, result.stderr[-2000:])
    assert result.recap.hosts["localhost"].ok == 5
    assert not list(Path(runner.tempfile.gettempdir()).glob("sovinfra-run-*/extra-vars.json"))
