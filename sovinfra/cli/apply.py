"""`sovinfra apply`: converge hosts with a playbook, showing progress and a per-host recap."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from sovinfra import paths
from sovinfra.ansible import events, runner
from sovinfra.ansible import strategy as strategies
from sovinfra.cli.options import extra_vars_option, limit_option, strategy_option, vault_password_option
from sovinfra.errors import UserError
from sovinfra.inventory import site


def playbook_path(name: str) -> Path:
    candidate = Path(name)
    if candidate.is_file():
        return candidate.resolve()
    playbooks = paths.project_root() / "playbooks"
    for option in (playbooks / name, playbooks / f"{name}.yml"):
        if option.is_file():
            return option
    known = ", ".join(sorted(p.stem for p in playbooks.glob("*.yml")))
    raise UserError(f"playbook {name!r} not found (known: {known})")


def check_lock(inv: Any, limit: str | None) -> None:
    """A lock beside the inventory must read, cover every host and name only what the mirror holds."""
    from sovinfra.inventory import model
    from sovinfra.lock import build, gate, schema

    lock_path = schema.path_for(inv.hosts_file.parent)
    if not lock_path.exists():
        return
    lock = schema.load(lock_path)
    hosts = model.select_hosts(inv, limit)
    found = gate.problems(lock, inv, hosts, build.site_store(inv, paths.project_root() / "roles"))
    if found:
        raise UserError(f"{lock_path}: {len(found)} problem(s):\n" + "\n".join(f"  {p}" for p in found))


class Progress:
    """One line per host result worth seeing, and a running count of tasks."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.task = ""

    def __call__(self, event: dict[str, Any]) -> None:
        if self.quiet:
            return
        kind = event["event"]
        if kind == "play_start":
            click.echo(f"== {event.get('play')}", err=True)
        elif kind == "task_start":
            self.task = str(event.get("task", ""))
        elif kind == "host_result":
            status = event.get("status")
            if status in ("changed", "failed", "unreachable") or (
                status == "ok" and events.notice_kind(str(event.get("msg", "")))
            ):
                msg = f": {event['msg']}" if event.get("msg") and status != "changed" else ""
                label = "ignored" if status == "failed" and event.get("ignored") else status
                click.echo(f"   {event.get('host')}: {label:<11} {self.task}{msg}", err=True)


def run_with_progress(
    run: runner.PlaybookRun,
    vault: str | None,
    host_count: int,
    strategy_name: str,
    quiet: bool,
    forks: int | None = None,
) -> tuple[runner.RunResult, strategies.Strategy]:
    """A playbook run as the verbs run one: the vault password file, the chosen strategy (saying so when it
    falls back), live progress unless quiet; `forks` None sizes them to the inventory."""
    if vault:
        run.extra_args += ["--vault-password-file", vault]
    strategy = strategies.for_run(strategy_name)
    if strategy.notice:
        click.echo(f"notice: running Ansible's linear strategy: {strategy.notice}", err=True)
    result = runner.run_playbook(
        run,
        host_count,
        on_event=Progress(quiet=quiet),
        env_overrides={"ANSIBLE_FORKS": str(forks)} if forks else None,
        strategy=strategy,
    )
    return result, strategy


def _print_recap(result: runner.RunResult) -> None:
    click.echo(f"{'HOST':<16} {'OK':>4} {'CHANGED':>8} {'FAILED':>7} {'UNREACH':>8} {'SKIPPED':>8}")
    for host, r in sorted(result.recap.hosts.items()):
        click.echo(f"{host:<16} {r.ok:>4} {r.changed:>8} {r.failed:>7} {r.unreachable:>8} {r.skipped:>8}")


@click.command()
@click.argument("playbook", default="site")
@click.option("-i", "--inventory", "inventory_path", help="inventory directory or hosts.yml")
@limit_option
@click.option("--tags", help="only these tags (e.g. base,preflight)")
@click.option("--skip-tags", help="all but these tags (e.g. gpu_nodes)")
@click.option("--check", is_flag=True, help="report what would change, change nothing")
@click.option("--diff", is_flag=True, help="show file differences")
@extra_vars_option
@vault_password_option
@click.option(
    "--no-lock", is_flag=True, help="ignore the inventory's sovinfra.lock (to add a new kind of host)"
)
@strategy_option
@click.option(
    "--forks",
    type=click.IntRange(1, 1000),
    help=f"hosts worked on at once (default: one per host, {runner.MIN_FORKS} to {runner.MAX_FORKS})",
)
@click.option("--json", "as_json", is_flag=True, help="print a machine-readable summary")
def apply(
    playbook: str,
    inventory_path: str | None,
    limit: str | None,
    tags: str | None,
    skip_tags: str | None,
    check: bool,
    diff: bool,
    extra_vars: tuple[str, ...],
    vault_password_file: str | None,
    no_lock: bool,
    strategy_name: str,
    forks: int | None,
    as_json: bool,
) -> None:
    """Run PLAYBOOK (default: site) against the inventory."""
    path = site.resolve(inventory_path)
    extra = site.parse_extra_vars(extra_vars)
    inv, _ = site.load_checked(path, extra)  # bad input fails here, before any host is touched
    site.check_deployable(inv, extra)
    if no_lock:
        extra["site_lock_file"] = ""
    else:
        check_lock(inv, limit)
    run = runner.PlaybookRun(playbook_path(playbook), path, limit, tags, check, diff, extra_vars=extra)
    if skip_tags:
        run.extra_args += ["--skip-tags", skip_tags]
    vault = site.vault_password_file(vault_password_file, path)
    result, strategy = run_with_progress(run, vault, len(inv.hosts), strategy_name, as_json, forks)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "playbook": str(run.playbook),
                    "strategy": strategy.name,
                    "ok": result.ok,
                    **result.recap.as_dict(),
                },
                indent=2,
            )
        )
    else:
        _print_recap(result)
    if not result.recap.complete and result.stderr.strip():
        click.echo(result.stderr.strip()[-3000:], err=True)
    if not result.ok:
        failed = ", ".join(result.recap.failed_hosts) or "the playbook did not complete"
        for f in result.recap.failures:
            click.echo(f"failed: {f['host']}: {f['task']}: {f['msg']}", err=True)
        click.echo(f"apply failed: {failed}", err=True)
        raise SystemExit(1)
