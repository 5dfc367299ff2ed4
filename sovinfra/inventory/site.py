"""Choosing the inventory and checking it before any host is touched (the edge: reads files)."""

from __future__ import annotations

import os
from pathlib import Path

from sovinfra import paths
from sovinfra.errors import UserError
from sovinfra.inventory import model, specs, validate


def resolve(explicit: str | None) -> Path:
    """-i wins, then SOVINFRA_INVENTORY, then the lab's inventory while the lab is up."""
    chosen = explicit or os.environ.get("SOVINFRA_INVENTORY")
    if chosen:
        path = Path(chosen)
        if not path.exists():
            source = "-i" if explicit else "SOVINFRA_INVENTORY"
            raise UserError(f"{path}: inventory not found ({source})")
        return path
    from sovinfra.lab import manager  # the lab is optional; import only when it decides

    lab = paths.lab_inventory_dir()
    if manager.is_up() and (lab / "hosts.yml").exists():
        return lab
    raise UserError("no inventory: pass -i INVENTORY, set SOVINFRA_INVENTORY, or start the lab (sovinfra lab up)")


def load_checked(path: Path) -> tuple[model.Inventory, list[validate.Problem]]:
    """The inventory and every problem in it; raises UserError when any problem is an error."""
    roles_dir = paths.project_root() / "roles"
    inv = model.load(path)
    problems = validate.check(inv, specs.load_specs(roles_dir), specs.role_names(roles_dir))
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise UserError(
            f"{path}: {len(errors)} problem(s) in the inventory:\n" + "\n".join(f"  {p}" for p in errors)
        )
    return inv, problems
