"""Running ansible-playbook with the project's settings, reading its JSON-lines events as they come."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sovinfra import paths
from sovinfra.ansible import events
from sovinfra.ansible import strategy as strategies
from sovinfra.ansible.strategy import Strategy
from sovinfra.errors import UserError

PLUGIN_DIR = Path(__file__).resolve().parent / "plugins"
MIN_FORKS = 5  # Ansible's own default
MAX_FORKS = 64


@dataclass
class PlaybookRun:
    playbook: Path
    inventory: Path
    limit: str | None = None
    tags: str | None = None
    check: bool = False
    diff: bool = False
    extra_args: list[str] = field(default_factory=list)
    # Passed through a file readable only by this user, never argv (a value may be a secret; `ps` shows argv).
    extra_vars: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    returncode: int
    recap: events.Recap
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.recap.complete and not self.recap.failed_hosts


def forks_for(host_count: int) -> int:
    """One fork per host up to a ceiling: a fleet converges in one wave, not in batches of 5."""
    return max(MIN_FORKS, min(host_count, MAX_FORKS))


def command(run: PlaybookRun, extra_vars_file: Path | None = None) -> list[str]:
    cmd = ["ansible-playbook", "-i", str(run.inventory), str(run.playbook)]
    if extra_vars_file is not None:
        cmd += ["--extra-vars", f"@{extra_vars_file}"]
    if run.limit:
        cmd += ["--limit", run.limit]
    if run.tags:
        cmd += ["--tags", run.tags]
    if run.check:
        cmd.append("--check")
    if run.diff:
        cmd.append("--diff")
    return cmd + run.extra_args


def environment(
    host_count: int, overrides: dict[str, str] | None = None, strategy: Strategy | None = None
) -> dict[str, str]:
    root = paths.project_root()
    env = dict(os.environ)
    for stale in ("ANSIBLE_STRATEGY", "ANSIBLE_STRATEGY_PLUGINS"):
        env.pop(stale, None)  # the run's strategy is chosen below, not inherited
    env.update(
        {
            "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
            "ANSIBLE_STDOUT_CALLBACK": "sovinfra_jsonl",
            "ANSIBLE_CALLBACK_PLUGINS": str(PLUGIN_DIR / "callback"),
            "ANSIBLE_TEST_PLUGINS": str(PLUGIN_DIR / "test"),
            "ANSIBLE_FORKS": str(forks_for(host_count)),
            "ANSIBLE_NOCOLOR": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if strategy is not None:
        env["ANSIBLE_STRATEGY"] = strategy.name
        if strategy.plugin_dir is not None:
            env["ANSIBLE_STRATEGY_PLUGINS"] = str(strategy.plugin_dir)
    env.update(overrides or {})
    # Whatever the caller's shell says: unknown or changed host keys are refused (ansible.cfg's rule).
    env["ANSIBLE_HOST_KEY_CHECKING"] = "True"
    return env


def run_playbook(
    run: PlaybookRun,
    host_count: int,
    on_event: Callable[[dict[str, Any]], None] = lambda _e: None,
    env_overrides: dict[str, str] | None = None,
    strategy: Strategy | None = None,
) -> RunResult:
    """Run a playbook; `strategy` None means the project's default (Mitogen where supported)."""
    with tempfile.TemporaryDirectory(prefix="sovinfra-run-") as private:  # mode 0700, removed after the run
        vars_file = None
        if run.extra_vars:
            vars_file = Path(private) / "extra-vars.json"
            fd = os.open(vars_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump(run.extra_vars, out)
        return _run(command(run, vars_file), host_count, on_event, env_overrides, strategy)


def _run(
    cmd: list[str],
    host_count: int,
    on_event: Callable[[dict[str, Any]], None],
    env_overrides: dict[str, str] | None,
    strategy: Strategy | None,
) -> RunResult:
    recap = events.Recap()
    try:
        proc = subprocess.Popen(
            cmd,
            cwd=paths.project_root(),
            env=environment(host_count, env_overrides, strategy or strategies.for_run()),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    except FileNotFoundError as exc:
        raise UserError("ansible-playbook is not installed (pip install ansible-core)") from exc
    assert proc.stdout is not None and proc.stderr is not None
    stderr_chunks: list[str] = []
    # Drain stderr beside stdout so a chatty stderr can never block the playbook.
    drain = threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()), daemon=True)  # type: ignore[union-attr]
    drain.start()
    for line in proc.stdout:
        event = events.parse_line(line)
        if event:
            events.apply_event(recap, event)
            on_event(event)
    returncode = proc.wait()
    drain.join()
    return RunResult(returncode, recap, "".join(stderr_chunks))
