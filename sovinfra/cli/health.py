"""`sovinfra health`: the node agent. Reads local GPUs through NVML; exit 0 healthy, 1 failing, 2 cannot run.

Imports nothing but the health package: GPU nodes carry no Ansible or pyinfra.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import click

from sovinfra import atomic
from sovinfra.errors import UserError

DEFAULT_EXPECT = Path("/etc/sovinfra/health.yml")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option(
    "--prometheus",
    "prom_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="also write node_exporter textfile metrics here",
)
@click.option(
    "--expect",
    "expect_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"expected GPUs and versions (default: {DEFAULT_EXPECT} if present)",
)
@click.option(
    "--xid-window",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 3600),
    help="seconds to listen for live XID events",
)
def health(as_json: bool, prom_path: Path | None, expect_path: Path | None, xid_window: float) -> None:
    """Check this node's GPUs through NVML."""
    from sovinfra.health import checks, collect, expect, report

    if expect_path is None and DEFAULT_EXPECT.exists():
        expect_path = DEFAULT_EXPECT
    expectations = expect.load(expect_path) if expect_path else expect.Expectations()
    try:
        node = collect.collect(xid_window_s=xid_window)
    except collect.NvmlUnavailable as exc:
        if as_json:
            click.echo(
                json.dumps(
                    {"host": socket.gethostname(), "status": "cannot_run", "error": str(exc), "findings": []}
                )
            )
        else:
            click.echo(f"cannot run: {exc}", err=True)
        raise SystemExit(2) from exc
    findings = checks.check_node(node, expectations)
    doc = report.document(node, findings, socket.gethostname())
    if prom_path:
        try:
            atomic.write_text(prom_path, report.prometheus(node, findings))
        except OSError as exc:
            raise UserError(f"{prom_path}: cannot write: {exc.strerror}") from exc
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(
            f"{doc['host']}: {doc['status']} ({doc['gpu_count']} GPUs, driver {node.driver_version}, "
            f"CUDA {node.cuda_driver_version})"
        )
        for f in findings:
            if f.severity != "ok":
                gpu = (
                    f"GPU {f.gpu_index} {f.serial or ''} {f.bus_id or ''}"
                    if f.gpu_index is not None
                    else "node"
                )
                click.echo(
                    f"  {f.severity.upper():<4} {f.check:<14} {gpu.strip()}: {f.message}"
                    + (f" -> {f.action}" if f.action else "")
                )
    raise SystemExit(1 if doc["status"] == "unhealthy" else 0)
