"""The roles' documented interfaces: roles/*/meta/argument_specs.yml."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sovinfra.errors import UserError
from sovinfra.inventory.model import read_yaml


@dataclass(frozen=True)
class VarSpec:
    role: str
    name: str
    spec: dict[str, Any]


def role_options(roles_dir: Path) -> dict[str, dict[str, Any]]:
    """Each role's main entry point options, by role name (what validate.yml checks hosts against)."""
    found: dict[str, dict[str, Any]] = {}
    for spec_file in sorted(roles_dir.glob("*/meta/argument_specs.yml")):
        doc = read_yaml(spec_file) or {}
        found[spec_file.parent.parent.name] = ((doc.get("argument_specs") or {}).get("main") or {}).get(
            "options"
        ) or {}
    return found


def load_specs(roles_dir: Path) -> dict[str, VarSpec]:
    """Every role variable by name. A name claimed by two roles is a bug in the roles, reported as such."""
    specs: dict[str, VarSpec] = {}
    for role, options in role_options(roles_dir).items():
        for name, spec in options.items():
            if name in specs:
                spec_file = roles_dir / role / "meta" / "argument_specs.yml"
                raise UserError(f"{spec_file}: {name} is already defined by role {specs[name].role}")
            specs[name] = VarSpec(role, name, spec or {})
    return specs


def role_names(roles_dir: Path) -> list[str]:
    """Roles that own a variable prefix: those with tasks, and those that only declare variables."""
    return sorted(
        p.name
        for p in roles_dir.iterdir()
        if (p / "tasks" / "main.yml").is_file() or (p / "meta" / "argument_specs.yml").is_file()
    )
