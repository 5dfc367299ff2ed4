"""`sovinfra audit`: what the site still depends on outside itself (read-only, through pyinfra)."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from sovinfra import audit as judge
from sovinfra import paths
from sovinfra.cli.options import limit_option
from sovinfra.fleet.connection import read_all
from sovinfra.fleet.sources import HostSources
from sovinfra.inventory import defaults, model, site


@click.command()
@click.option("-i", "--inventory", "inventory_path", help="inventory directory or hosts.yml")
@limit_option
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def audit(inventory_path: str | None, limit: str | None, as_json: bool) -> None:
    """List every source hosts fetch from; flag what is outside the site, unsigned or mutable (exit 1)."""
    path = site.resolve(inventory_path)
    inv, _ = site.load_checked(path)
    hosts = model.select_hosts(inv, limit)
    variables = {h: model.host_vars(inv, h) for h in sorted(inv.hosts)}
    networks: list[str] = next((v["site_networks"] for v in variables.values() if v.get("site_networks")), [])
    scope = judge.scope(variables, list(networks))
    roles_dir = paths.project_root() / "roles"
    reads = read_all(inv, hosts, HostSources)
    sources: list[judge.Source] = []
    findings: list[judge.Finding] = []
    for host in hosts:
        read = reads[host]
        if not read.reachable:
            findings.append(judge.Finding(host, "host", "", "", f"unreachable: {read.error}"))
            continue
        found, trust = judge.host_sources(host, read.value)
        sources += found
        findings += trust + judge.judge(found, scope)
        findings += judge.mutable_references(host, variables[host], str(path))
        registries = defaults.setting(inv, roles_dir, host, "container_runtime_registry_mirrors") or []
        findings += judge.unmirrored_registries(host, read.value, list(registries))
    if as_json:
        doc = {"sources": [asdict(s) for s in sources], "findings": [asdict(f) for f in findings]}
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(f"{'HOST':<12} {'KIND':<10} {'SOURCE':<48} FILE")
        for s in sources:
            click.echo(f"{s.host:<12} {s.kind:<10} {s.value[:48]:<48} {s.file}")
        click.echo("")
        for f in findings:
            click.echo(f"FINDING {f.host}: {f.kind} {f.value} ({f.file}): {f.problem}")
        click.echo(f"{len(findings)} finding(s) on {len(hosts)} host(s)")
    if findings:
        raise SystemExit(1)
