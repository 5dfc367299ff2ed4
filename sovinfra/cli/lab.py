"""`sovinfra lab`: the built-in lab of nspawn hosts."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from sovinfra.lab import config, manager

# Another checkout's lab is refused (manager.owner_problem) unless this is given.
_force = click.option("--force", is_flag=True, help="even when another project checkout owns the lab")


def _log(message: str) -> None:
    click.echo(message, err=True)


@click.group()
def lab() -> None:
    """The built-in lab: real systemd hosts in containers on this machine."""


def _register() -> None:
    from sovinfra.cli import lab_gpu, lab_vm

    lab.add_command(lab_gpu.nvml)
    lab.add_command(lab_gpu.gpu)
    lab.add_command(lab_vm.vm)
    lab.add_command(lab_vm.box)


@lab.command()
@click.option("--nodes", default=2, show_default=True, type=int, help="GPU nodes (plus one mirror host)")
@click.option(
    "--air-gapped/--apt-proxy",
    default=None,
    help="air-gapped: no apt proxy, hosts install only from the site's package snapshot (run "
    "`sovinfra mirror packages sync` before `apply`); apt-proxy: through the gateway's apt-cacher-ng. "
    "Default: a running lab keeps its mode, a new one gets the proxy",
)
@click.option(
    "--release",
    type=click.Choice(config.RELEASE_CHOICES),
    default=None,
    help="Debian release of the hosts: bookworm (12), trixie (13), or mixed (the mirror host and odd GPU "
    "nodes 12, even GPU nodes 13; apt-proxy labs). Default: a running lab keeps its releases, a new one "
    "gets bookworm; a host whose release changes boots blank",
)
@_force
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def up(nodes: int, air_gapped: bool | None, release: str | None, force: bool, as_json: bool) -> None:
    """Boot (or complete) the lab and write inventory/lab/."""
    from sovinfra import paths

    current = manager.up(nodes, air_gapped=air_gapped, log=_log, force=force, release=release)
    if as_json:
        doc = {
            "hosts": {
                h.name: {"address": h.address, "groups": h.groups, "release": h.release}
                for h in current.hosts.values()
            },
            "air_gapped": current.air_gapped,
            "inventory": str(paths.lab_inventory_dir()),
            "owner": current.owner,
        }
        click.echo(json.dumps(doc, indent=2))
        return
    mode = " (air-gapped)" if current.air_gapped else ""
    click.echo(f"lab up{mode}: {len(current.hosts)} hosts; inventory written to inventory/lab/hosts.yml")


@lab.command()
@click.option("--seed", default=1, show_default=True, type=int, help="random weights from this seed")
@click.option("--revision", default="main", show_default=True, help="branch name in the mirror")
@click.option(
    "--engine/--no-engine",
    default=True,
    show_default=True,
    help="also build the llama.cpp engine's wheels into the wheelhouse (once)",
)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def model(seed: int, revision: str, engine: bool, as_json: bool) -> None:
    """A tiny random-weight GGUF model into the mirror store; the lab's inference service pinned to it.

    The store is SOVINFRA_MIRROR_STORE or the default one, which the lab's mirror host publishes.
    """

    from sovinfra import paths
    from sovinfra.cli.mirror import default_store
    from sovinfra.lab import model as lab_model
    from sovinfra.lab import state

    store = default_store()
    if engine:
        nodes = [h for h in state.load().hosts.values() if "gpu_nodes" in h.groups]
        releases = {h.release for h in nodes} or {config.DEFAULT_RELEASE}
        lab_model.ensure_engine_wheels(store, paths.project_root() / "roles", _log, releases)
    commit = lab_model.import_model(store, seed, revision, _log)
    written = lab_model.write_services(paths.lab_inventory_dir(), commit)
    if as_json:
        click.echo(json.dumps({"repo": lab_model.REPO, "commit": commit, "file": lab_model.FILE}))
    else:
        click.echo(f"{lab_model.REPO}@{commit} in {store}; service pinned in {written}")


@lab.command()
@_force
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def down(force: bool, as_json: bool) -> None:
    """Remove every host, the bridge, nft table, cgroups and processes the lab made."""
    left = manager.down(log=_log, force=force)
    if as_json:
        click.echo(json.dumps({"clean": left.empty(), "left": asdict(left)}, indent=2, default=str))
        if not left.empty():
            raise SystemExit(1)
        return
    if not left.empty():
        raise click.ClickException(f"lab down left things behind: {left}")
    click.echo("lab down: nothing left behind")


@lab.command()
@click.argument("host")
@_force
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def wipe(host: str, force: bool, as_json: bool) -> None:
    """Destroy HOST's disk (overlay, caches, host key) and boot it blank: the disaster for rebuild drills."""
    manager.wipe(host, log=_log, force=force)
    if as_json:
        click.echo(json.dumps({"host": host, "wiped": True}))


@lab.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def status(as_json: bool) -> None:
    """Each lab host and whether it answers ssh."""
    rows = manager.status()
    egress = manager.egress_packets()
    if as_json:
        click.echo(json.dumps({"hosts": [asdict(r) for r in rows], "egress_packets": egress}, indent=2))
        return
    if not rows:
        click.echo("lab is down")
        return
    click.echo(f"packets sent outside the lab: {egress if egress is not None else 'unknown (no nft table)'}")
    click.echo(f"{'HOST':<10} {'ADDRESS':<15} {'RELEASE':<9} {'RUNNING':<8} {'SSH':<4} GROUPS")
    for r in rows:
        click.echo(
            f"{r.name:<10} {r.address:<15} {r.release:<9} {'yes' if r.running else 'no':<8} "
            f"{'yes' if r.ssh else 'no':<4} {','.join(r.groups)}"
        )


_register()
