"""`sovinfra lock`: write (or check) the lock of everything the inventory's hosts run."""

from __future__ import annotations

import json

import click

from sovinfra import paths
from sovinfra.errors import UserError
from sovinfra.fleet.state import read_states
from sovinfra.inventory import site
from sovinfra.lock import build, schema


@click.command()
@click.option("-i", "--inventory", "inventory_path", help="inventory directory or hosts.yml")
@click.option("--check", is_flag=True, help="exit 1 when the lock no longer matches the inventory and mirror")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def lock(inventory_path: str | None, check: bool, as_json: bool) -> None:
    """Write <inventory>/sovinfra.lock: snapshot, packages, NVIDIA versions, wheels, models, files, units."""
    path = site.resolve(inventory_path)
    inv, _ = site.load_checked(path)
    roles_dir = paths.project_root() / "roles"
    lock_path = schema.path_for(inv.hosts_file.parent)
    store_path = build.site_store(inv, roles_dir)  # the store the roles ship from: one source
    if check:  # the inventory and mirror only: no host is read
        written = schema.load(lock_path)
        now = build.intent(inv, roles_dir, store_path)
        difference = schema.diff(build.intent_of(written), now, str(lock_path))
        if as_json:
            click.echo(json.dumps({"lock": str(lock_path), "current": not difference, "diff": difference}))
        else:
            click.echo(difference or f"{lock_path}: matches the inventory and the mirror")
        raise SystemExit(1 if difference else 0)
    hosts = sorted(inv.hosts)
    venv, cache = build.node_paths(inv, roles_dir)
    reads = read_states(inv, hosts, venv, cache, verify=[], rehash=False)
    down = [f"{h} ({r.error})" for h, r in reads.items() if not r.reachable]
    if down:
        raise UserError(f"cannot lock: unreachable: {', '.join(down)}")
    doc = build.resolve(
        inv,
        roles_dir,
        store_path,
        {h: r.value for h, r in reads.items()},
        build.project_commit(paths.project_root()),
    )
    schema.validate(doc, "the lock made")  # what is written reads back
    before = schema.load(lock_path) if lock_path.exists() else None
    schema.write(lock_path, doc)
    changes = schema.diff(before, doc, str(lock_path)) if before else ""
    # Without a sha256 a package did not come from the snapshot (the base image's older release, or a
    # repository served as a copy): a rebuild from the mirror cannot bring back that exact file.
    outside = sorted(
        {
            f"{p}={e['version']}"
            for b in doc["classes"].values()
            for p, e in b["packages"].items()
            if not e["sha256"]
        }
    )
    summary = {
        "lock": str(lock_path),
        "changed": before != doc,
        "classes": {c: len(b["hosts"]) for c, b in doc["classes"].items()},
        "packages": sum(len(b["packages"]) for b in doc["classes"].values()),
        "models": len(doc["models"]),
        "not_in_snapshot": outside,
    }
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(changes or f"{lock_path}: {'written' if before is None else 'unchanged'}")
        pins = f"{summary['packages']} package pins in {len(doc['classes'])} class(es)"
        click.echo(f"{pins}, {summary['models']} model(s)")
        if outside:
            snapshot = doc["packages_snapshot"] or "(none)"
            listed = " ".join(outside[:12]) + (" ..." if len(outside) > 12 else "")
            click.echo(f"{len(outside)} package(s) hosts run are not in snapshot {snapshot}: {listed}")
