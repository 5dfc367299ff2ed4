"""Role defaults, read from `roles/*/defaults/main.yml` (the one place each default is set), and a host's
value of a role variable: the inventory's, else the role's default."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from sovinfra.inventory import model

# A default that only names another variable ("{{ nvidia_driver_version | default('') }}") means that one.
_ALIAS = re.compile(r"^\{\{\s*([a-z_][a-z0-9_]*)\s*(\|\s*default\([^)]*\)\s*)?\}\}$")


@functools.lru_cache(maxsize=64)
def _read(path: Path) -> dict[str, Any]:
    return dict(model.read_yaml(path) or {}) if path.exists() else {}


def role_defaults(roles_dir: Path, role: str) -> dict[str, Any]:
    return dict(_read(roles_dir / role / "defaults" / "main.yml"))


def role_vars(roles_dir: Path, role: str, name: str = "main") -> dict[str, Any]:
    """A role's constants (`roles/ROLE/vars/NAME.yml`), for code that must agree with them."""
    return dict(_read(roles_dir / role / "vars" / f"{name}.yml"))


def all_defaults(roles_dir: Path) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in sorted(roles_dir.glob("*/defaults/main.yml")):
        merged.update(_read(path))
    return merged


def setting(inv: model.Inventory, roles_dir: Path, host: str, key: str, depth: int = 3) -> Any:
    """A host's value of a role variable: the inventory's, else the role default (aliases followed)."""
    hv = model.host_vars(inv, host)
    value = hv[key] if key in hv else all_defaults(roles_dir).get(key)
    alias = _ALIAS.match(value) if isinstance(value, str) else None
    return setting(inv, roles_dir, host, alias[1], depth - 1) if alias and depth else value
