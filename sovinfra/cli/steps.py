"""Running sovinfra's own verbs as steps of a longer one (rebuild, provision): each its own process with
--json, its progress on the terminal, its answer kept for the record."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import click


def run(verb: str, name: str, args: list[str]) -> dict:
    """One sovinfra command; its progress goes to the terminal, its --json answer into the record."""
    click.echo(f"== {verb}: {name}", err=True)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "sovinfra", *args, "--json"], stdout=subprocess.PIPE, text=True
    )
    try:
        answer = json.loads(done.stdout) if done.stdout.strip() else None
    except ValueError:
        answer = {"output": done.stdout[-2000:]}
    return {"step": name, "exit_code": done.returncode, "seconds": round(time.monotonic() - started, 1),
            "result": answer}  # fmt: skip


def echo_table(steps: list[dict]) -> None:
    """One line per step: its name, ok or FAILED, its seconds."""
    width = max((len(s["step"]) for s in steps), default=0) + 2
    for s in steps:
        click.echo(
            f"{s['step']:<{width}} {'ok' if s['exit_code'] == 0 else 'FAILED':<7} {s['seconds']:>7.1f} s"
        )
