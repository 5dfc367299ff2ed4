"""Before a converge with a lock: every host has its class in the lock, and the mirror still holds what
the lock names (its package snapshot, its models), so a run never starts that the lock cannot finish."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sovinfra.inventory import model
from sovinfra.lock.build import host_class
from sovinfra.mirror.store import Store


def problems(lock: dict[str, Any], inv: model.Inventory, hosts: list[str], store: Path) -> list[str]:
    found = []
    for host in hosts:
        cls = host_class(inv, host)
        if cls not in lock["classes"]:
            found.append(
                f"hosts.{host}: no class {cls!r} in the lock (a new kind of host): converge it with "
                "--no-lock, then run sovinfra lock"
            )
    snapshot = lock["packages_snapshot"]
    if snapshot and not (store / "packages" / "snapshots" / f"{snapshot}.json").is_file():
        found.append(f"packages_snapshot: {snapshot} is no longer in the mirror store {store} (pruned?)")
    mirror = Store(store)
    for pin in lock["models"]:
        repo, commit = pin.split("@")
        if commit not in mirror.commits(repo):
            found.append(f"models.{pin}: the mirror store {store} no longer holds this commit")
    return found
