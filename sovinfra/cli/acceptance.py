"""`sovinfra acceptance`: one run that proves a site (GPU health, every endpoint swept), kept as a directory
with records, JUnit XML and report.html; `accept RUN` makes a run the baseline later runs are compared with.

Runs live beside the inventory: <inventory>/acceptance/runs/<run id>; the baseline in
<inventory>/acceptance/baseline (`current` names the accepted run).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from sovinfra.cli.options import limit_option, site_endpoint_option, vault_password_option
from sovinfra.errors import UserError
from sovinfra.inventory import site
from sovinfra.inventory.model import select_hosts


def _home(inventory_path: str | None) -> Path:
    from sovinfra.acceptance import rundir

    path = site.resolve(inventory_path)
    return rundir.home(path if path.is_dir() else path.parent)


def _run_dir(run: str, inventory_path: str | None) -> Path:
    """A run named by its directory (a path), or by its id under the inventory's runs."""
    given = Path(run)
    if given.is_dir():
        return given
    if "/" in run:
        raise UserError(f"{run}: no such run directory")
    found = _home(inventory_path) / "runs" / run
    if not found.is_dir():
        raise UserError(f"{run}: no run of that id in {found.parent}")
    return found


def _summary_lines(summary: dict, records: list) -> list[str]:
    from sovinfra.acceptance.records import FAILING

    lines = [
        f"acceptance {summary['run']}: {summary['verdict'].upper()} "
        f"({len(records)} results, baseline {summary.get('baseline') or 'none'})"
    ]
    for r in [r for r in records if r.status in FAILING] + [r for r in records if r.status == "warn"]:
        lines.append(f"  {r.status:<8} {r.stage:<13} {r.subject:<40} {r.check:<14} {r.message}")
    return lines


@click.group(invoke_without_command=True)
@click.option("-i", "--inventory", "inventory_path", help="inventory directory or hosts.yml")
@limit_option
@click.option(
    "--profile",
    type=click.Choice(["quick", "full"]),
    default="quick",
    show_default=True,
    help="quick: health and a 3-point sweep per endpoint; full: a 6-point sweep",
)
@click.option(
    "--baseline",
    "baseline_dir",
    default="auto",
    show_default=True,
    help="baseline directory to compare with; auto: the inventory's; none: compare with nothing",
)
@click.option(
    "--tolerances",
    "tolerances_file",
    type=click.Path(path_type=Path),
    help="YAML of percent tolerances against the baseline (ttft_p50_pct, ...) over the defaults and the "
    "inventory's acceptance_tolerances",
)
@click.option("--accept", "accept_run", is_flag=True, help="make the run the baseline when it does not fail")
@click.option("--out", "out_dir", help="where the run directory goes (default: the inventory's runs)")
@vault_password_option
@site_endpoint_option
@click.option("--json", "as_json", is_flag=True, help="print the run's summary as JSON")
@click.pass_context
def acceptance(
    ctx: click.Context,
    inventory_path: str | None,
    limit: str | None,
    profile: str,
    baseline_dir: str,
    tolerances_file: Path | None,
    accept_run: bool,
    out_dir: str | None,
    vault_password_file: str | None,
    site_endpoint: bool,
    as_json: bool,
) -> None:
    """Prove the site: facts, GPU health before and after, every endpoint swept; exit 1 unless it passes."""
    if ctx.invoked_subcommand is not None:
        return
    from sovinfra import paths
    from sovinfra.acceptance import bandwidth, rundir
    from sovinfra.acceptance import baseline as baselines
    from sovinfra.acceptance.records import FAILING, verdict
    from sovinfra.acceptance.run import Run, execute
    from sovinfra.inventory.secrets import vault_lib
    from sovinfra.loadtest import targets

    path = site.resolve(inventory_path)
    inv, _ = site.load_checked(path)
    gpu_hosts = select_hosts(inv, limit, within="gpu_nodes")
    found = targets.chosen(
        inv,
        select_hosts(inv, limit),
        paths.project_root() / "roles",
        vault_lib(site.vault_password_file(vault_password_file, path)),
        site_endpoint,
    )
    if not gpu_hosts and not found:
        raise UserError(f"{path}: nothing to accept: no GPU node and no inference endpoint selected")
    home = _home(inventory_path)
    base_dir = (
        None
        if baseline_dir == "none"
        else home / "baseline"
        if baseline_dir == "auto"
        else Path(baseline_dir)
    )
    baseline = None
    if base_dir is not None:
        if baseline_dir != "auto" and not base_dir.is_dir() and not accept_run:
            raise UserError(f"{base_dir}: no such baseline directory")
        accepted = rundir.current(base_dir)
        baseline = rundir.load(accepted) if accepted else None  # a corrupt baseline: named, nothing runs
    tolerances = baselines.per_host(inv, tolerances_file)
    floors = bandwidth.per_host(inv)
    now = datetime.now(UTC)
    run = Run(id=now.strftime("%Y%m%dT%H%M%SZ"), profile=profile)
    out = (Path(out_dir) if out_dir else home / "runs") / run.id
    if out.exists():
        raise UserError(f"{out}: already exists (one run per second)")
    started = time.monotonic()
    log = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    execute(run, inv, gpu_hosts, found, baseline, tolerances, floors, log)
    summary = {
        "run": run.id,
        "started": now.isoformat(timespec="seconds"),
        "profile": profile,
        "inventory": str(path),
        "limit": limit,
        "verdict": verdict(run.records),
        "seconds": round(time.monotonic() - started, 1),
        "stage_seconds": run.stage_seconds,
        "fingerprint": run.fingerprint,
        "baseline": baseline[0]["run"] if baseline else None,
    }
    written = rundir.write(out, summary, run.records, run.raw)
    accepted_into = None
    if accept_run and summary["verdict"] != "fail":
        accepted_into = base_dir or home / "baseline"
        rundir.accept(written, accepted_into, force=False)
    if as_json:
        where = {"path": str(written), "report": str(written / "report.html")}
        into = {"accepted_into": str(accepted_into) if accepted_into else None}
        # What failed travels with the verdict, so a caller's record (rebuild's) says why, not just fail.
        failing = [r.to_json() for r in run.records if r.status in FAILING]
        click.echo(json.dumps({**summary, **where, **into, "failures": failing}, indent=2))
    else:
        click.echo("\n".join(_summary_lines(summary, run.records)))
        if accepted_into:
            click.echo(f"accepted as the baseline in {accepted_into}")
        click.echo(f"report: {written / 'report.html'}")
    if summary["verdict"] == "fail":
        raise SystemExit(1)


@acceptance.command()
@click.argument("run")
@click.option("-i", "--inventory", "inventory_path", help="inventory directory or hosts.yml")
@click.option("--baseline", "baseline_dir", help="baseline directory (default: the inventory's)")
@click.option("--force", is_flag=True, help="accept a failing run too")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def accept(
    run: str, inventory_path: str | None, baseline_dir: str | None, force: bool, as_json: bool
) -> None:
    """Make RUN (a run id or directory) the baseline later runs are compared with."""
    from sovinfra.acceptance import rundir

    source = _run_dir(run, inventory_path)
    target = Path(baseline_dir) if baseline_dir else _home(inventory_path) / "baseline"
    accepted = rundir.accept(source, target, force)
    if as_json:
        click.echo(json.dumps({"accepted": accepted, "baseline": str(target)}))
    else:
        click.echo(f"accepted {accepted} as the baseline in {target}")


@acceptance.command()
@click.argument("run")
@click.option("-i", "--inventory", "inventory_path", help="inventory directory or hosts.yml")
@click.option("--json", "as_json", is_flag=True, help="the summary and every record as JSON")
def show(run: str, inventory_path: str | None, as_json: bool) -> None:
    """Print a run's verdict and its failures and warnings (what report.html shows first)."""
    from sovinfra.acceptance import rundir

    summary, records = rundir.load(_run_dir(run, inventory_path))
    if as_json:
        click.echo(json.dumps({"summary": summary, "records": [r.to_json() for r in records]}, indent=2))
    else:
        click.echo("\n".join(_summary_lines(summary, records)))
    if summary["verdict"] == "fail":
        raise SystemExit(1)
