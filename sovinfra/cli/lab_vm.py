"""`sovinfra lab vm` and `sovinfra lab box`: the Vagrant lab (GPU nodes as VMs) and its offline box."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from sovinfra.lab import config
from sovinfra.lab import vm as lab_vm


def _log(message: str) -> None:
    click.echo(message, err=True)


@click.group()
def vm() -> None:
    """GPU nodes as VMs with their own kernels (Vagrant, libvirt) on the lab's network."""


@vm.command()
@click.option("--nodes", default=2, show_default=True, envvar="SOVINFRA_VAGRANT_NODES", type=int,
              help="GPU-node VMs (or SOVINFRA_VAGRANT_NODES)")  # fmt: skip
@click.option("--cpus", default=lab_vm.DEFAULT_CPUS, show_default=True, envvar="SOVINFRA_VAGRANT_CPUS",
              type=int, help="virtual CPUs per VM (or SOVINFRA_VAGRANT_CPUS)")  # fmt: skip
@click.option("--memory", "memory_mib", default=lab_vm.DEFAULT_MEMORY_MIB, show_default=True,
              envvar="SOVINFRA_VAGRANT_MEMORY", type=int,
              help="MiB per VM (or SOVINFRA_VAGRANT_MEMORY)")  # fmt: skip
@click.option("--provision/--no-provision", default=True, show_default=True,
              help="converge playbooks/site.yml on each VM (Vagrant's ansible provisioner)")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def up(nodes: int, cpus: int, memory_mib: int, provision: bool, as_json: bool) -> None:
    """Build the box (once), give each VM its host key, name and address, and `vagrant up` them."""
    from sovinfra.cli.mirror import default_store

    made = lab_vm.up(nodes, cpus, memory_mib, provision, _log, default_store())
    if as_json:
        click.echo(json.dumps({"vms": [asdict(v) for v in made], "driver": lab_vm.driver()}, indent=2))
    else:
        click.echo(f"lab vm up ({lab_vm.driver()}): {', '.join(f'{v.name} {v.address}' for v in made)}")


@vm.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def down(as_json: bool) -> None:
    """Remove every VM, volume and pinned host key the Vagrant lab made."""
    left = lab_vm.down(_log)
    if as_json:
        click.echo(json.dumps({"clean": not left, "left": left}))
    elif left:
        raise click.ClickException(f"lab vm down left VMs behind: {', '.join(left)}")
    else:
        click.echo("lab vm down: nothing left behind")
    if left:
        raise SystemExit(1)


@vm.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def status(as_json: bool) -> None:
    """Each VM, its libvirt state and whether it answers ssh."""
    rows = lab_vm.status()
    if as_json:
        click.echo(json.dumps({"vms": [asdict(r) for r in rows]}, indent=2))
        return
    if not rows:
        click.echo("no lab VMs")
        return
    click.echo(f"{'VM':<8} {'ADDRESS':<15} {'STATE':<10} SSH")
    for r in rows:
        click.echo(f"{r.name:<8} {r.address:<15} {r.state:<10} {'yes' if r.ssh else 'no'}")


@click.group()
def box() -> None:
    """The Vagrant box the lab's VMs boot: built here from Debian's packages, no Vagrant Cloud."""


@box.command()
@click.option("--release", default=config.DEFAULT_RELEASE, show_default=True,
              type=click.Choice(list(config.RELEASES)), help="Debian release")  # fmt: skip
@click.option("--source", type=click.Choice(["auto", "archive", "snapshot"]), default="auto",
              show_default=True, help="where its packages come from; auto: as `lab vm up` takes them (the "
              "site's package snapshot in an air-gapped lab whose store holds the box's packages, else "
              "Debian's archive)")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def build(release: str, source: str, as_json: bool) -> None:
    """Build the box once per recipe and source (mmdebstrap, kernel, GRUB, sshd, a user key of its own) and
    add it."""
    from sovinfra.cli.mirror import default_store
    from sovinfra.errors import UserError
    from sovinfra.lab import box as lab_box
    from sovinfra.lab import state

    store = default_store()
    if source == "snapshot":
        found, why = lab_box.site_snapshot(store)
        if found is None:
            raise UserError(f"--source snapshot: {why}")
        chosen = found
    elif source == "archive":
        chosen = lab_box.ARCHIVE
    else:
        chosen = lab_vm.box_source(store, state.load().air_gapped, _log)
    name = lab_box.ensure(release, _log, chosen)
    doc = {
        "box": name,
        "source": chosen.describe(release),
        "file": str(lab_box.box_file(release, chosen)),
        "user_key": str(lab_box.user_key(release, chosen)),
    }
    click.echo(json.dumps(doc, indent=2) if as_json else f"box {name} from {doc['source']}: {doc['file']}")
