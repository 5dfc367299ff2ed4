"""The CLI in-process: user errors exit 2 with a message, never a traceback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from sovinfra.cli import cli
from tests.conftest import missing


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.delenv("SOVINFRA_INVENTORY", raising=False)
    monkeypatch.setenv("SOVINFRA_LAB_DIR", str(tmp_path / "no-lab"))  # the lab is down for these tests
    return CliRunner()


def test_every_verb_has_help(runner: CliRunner) -> None:
    for args in (
        ["--help"],
        ["lab", "--help"],
        ["lab", "up", "--help"],
        ["inventory", "check", "--help"],
        ["apply", "--help"],
        ["facts", "--help"],
    ):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, args
    assert "--json" in runner.invoke(cli, ["apply", "--help"]).output


def test_inventory_check_json(runner: CliRunner, example_inventory: Path) -> None:
    result = runner.invoke(cli, ["inventory", "check", "-i", str(example_inventory), "--json"])
    assert result.exit_code == 0
    doc = json.loads(result.output)
    assert doc["ok"] is True
    assert len(doc["groups"]["gpu_nodes"]) == 8


def test_bad_inventory_exits_2_naming_file_and_key(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "hosts.yml").write_text(
        yaml.safe_dump({"all": {"hosts": {"h": {"base_ssh_max_auth_tries": "x"}}}})
    )
    for args in (["inventory", "check"], ["apply"], ["facts"]):
        result = runner.invoke(cli, [*args, "-i", str(tmp_path)])
        assert result.exit_code == 2, args
        assert "hosts.yml" in result.output and "base_ssh_max_auth_tries" in result.output
        assert "Traceback" not in result.output


def test_no_inventory_says_what_to_do(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["apply"])
    assert result.exit_code == 2
    assert "sovinfra lab up" in result.output


def test_unknown_playbook_is_a_user_error(runner: CliRunner, example_inventory: Path) -> None:
    result = runner.invoke(cli, ["apply", "nosuchbook", "-i", str(example_inventory)])
    assert result.exit_code == 2
    assert "nosuchbook" in result.output and "site" in result.output


def test_lab_up_rejects_bad_node_count(runner: CliRunner) -> None:
    if os.geteuid() != 0:
        missing("the lab checks for root first")
    result = runner.invoke(cli, ["lab", "up", "--nodes", "0"])
    assert result.exit_code == 2
    assert "--nodes" in result.output


def test_lab_status_when_down(runner: CliRunner) -> None:
    assert runner.invoke(cli, ["lab", "status"]).output.strip() == "lab is down"
    assert json.loads(runner.invoke(cli, ["lab", "status", "--json"]).output) == {
        "hosts": [],
        "egress_packets": None,
    }


def _commands() -> list[tuple[str, click.Command]]:
    ctx = click.Context(cli)

    def walk(cmd: click.Command, path: list[str]) -> list[tuple[str, click.Command]]:
        if isinstance(cmd, click.Group):
            found = []
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None, name
                found += walk(sub, [*path, name])
            return found
        return [(" ".join(path), cmd)]

    return walk(cli, [])


def test_every_verb_and_option_has_help() -> None:
    """The click tree, walked whole: `--help` explains every verb and every option."""
    commands = _commands()
    assert len(commands) > 25
    for path, cmd in commands:
        assert cmd.help, f"sovinfra {path} has no help"
        for param in cmd.params:
            if isinstance(param, click.Option):
                assert param.help, f"sovinfra {path} {param.opts[0]} has no help"


def test_inventory_and_limit_mean_the_same_everywhere() -> None:
    for path, cmd in _commands():
        options = {o: p for p in cmd.params for o in getattr(p, "opts", [])}
        if "-i" in options:
            assert options["-i"].opts == ["-i", "--inventory"], path
        if "--limit" in options:
            assert "pattern" in (options["--limit"].help or "").lower(), f"sovinfra {path} --limit"


@pytest.mark.parametrize(
    "args",
    [
        ["mirror", "verify", "--store", "/nonexistent/store"],
        ["mirror", "ls", "--store", "/nonexistent/store"],
        ["drift", "-i", "/nonexistent/inventory"],
        ["lock", "-i", "/nonexistent/inventory"],
        ["verify", "health", "-i", "/nonexistent/inventory"],
        ["acceptance", "-i", "/nonexistent/inventory"],
        ["acceptance", "show", "/nonexistent/run"],
    ],
)
def test_a_missing_store_or_inventory_is_exit_2_and_json_under_json(
    runner: CliRunner, args: list[str]
) -> None:
    text = runner.invoke(cli, args)
    assert text.exit_code == 2 and "/nonexistent/" in text.output
    machine = runner.invoke(cli, [*args, "--json"])
    assert machine.exit_code == 2
    doc = json.loads(machine.stdout)
    assert doc["exit_code"] == 2 and "/nonexistent/" in doc["error"]


@pytest.mark.parametrize(
    "argv",
    [
        ["-m", "sovinfra", "health", "--help"],
        ["-m", "sovinfra", "mirror", "publish", "--help"],
        ["-m", "sovinfra", "mirror", "pull", "--help"],
        ["-m", "sovinfra.mirror.cache_check", "--help"],
        ["-m", "sovinfra.inference.ready", "--help"],
    ],
)
def test_what_hosts_run_needs_no_project_checkout(argv: list[str], tmp_path: Path) -> None:
    """Nodes and the mirror host run sovinfra from a venv with no roles/ or inventory beside it: the verbs
    they run must not read the project's files to start (a default read from roles/ at import did)."""
    import subprocess
    import sys

    env = {**os.environ, "SOVINFRA_PROJECT": str(tmp_path)}
    proc = subprocess.run([sys.executable, *argv], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_provision_asks_verify_health_only_what_it_takes(tmp_path: Path) -> None:
    """The health step `provision` runs after the converge is a command line `verify health` accepts (it
    once carried apply's --vault-password-file and failed on a verified node)."""
    from sovinfra.cli.provision import health_argv

    argv = health_argv(tmp_path / "inventory", ["gpu1", "gpu2"])
    assert argv[:2] == ["verify", "health"]
    verify = cli.get_command(click.Context(cli), "verify")  # loaded on demand
    assert isinstance(verify, click.Group)
    health = verify.commands["health"]
    ctx = health.make_context("health", argv[2:])
    assert ctx.params["limit"] == "gpu1,gpu2" and ctx.params["inventory_path"] == str(tmp_path / "inventory")
    with pytest.raises(click.NoSuchOption):  # what it once was given
        health.make_context("health", [*argv[2:], "--vault-password-file", str(tmp_path / "vault")])
