"""Choosing the inventory and checking it before any host is touched (the edge: reads files)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from sovinfra import paths
from sovinfra.errors import UserError
from sovinfra.inventory import defaults, model, specs, validate


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
    raise UserError(
        "no inventory: pass -i INVENTORY, set SOVINFRA_INVENTORY, or start the lab (sovinfra lab up)"
    )


def vault_password_file(explicit: str | None, inventory: Path) -> str | None:
    """--vault-password-file (or ANSIBLE_VAULT_PASSWORD_FILE) wins; the lab's inventory uses the lab's own."""
    if explicit:
        return explicit
    lab = paths.lab_inventory_dir().resolve()
    chosen = inventory.resolve()
    lab_file = paths.lab_dir() / "vault-password"
    if (chosen == lab or chosen.parent == lab) and lab_file.is_file():
        return str(lab_file)
    return None


def load_checked(
    path: Path, extra_vars: dict[str, Any] | None = None
) -> tuple[model.Inventory, list[validate.Problem]]:
    """The inventory (and any -e variables) with every problem in it; UserError when any is an error."""
    roles_dir = paths.project_root() / "roles"
    inv = model.load(path)
    if extra_vars:
        inv.sources.append(model.VarSource(Path("-e"), "extra vars", extra_vars))
    problems = validate.check(inv, specs.load_specs(roles_dir), specs.role_names(roles_dir))
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise UserError(
            f"{path}: {len(errors)} problem(s) in the inventory:\n" + "\n".join(f"  {p}" for p in errors)
        )
    return inv, problems


def check_deployable(inv: model.Inventory, extra: dict[str, Any]) -> None:
    """Before a converge: service declarations the inference role would refuse (names, ports, pins).

    Not part of load_checked: `verify load` also accepts endpoints that sovinfra does not deploy.
    """
    from sovinfra.inference.plan import declaration_problems

    roles_dir = paths.project_root() / "roles"
    role = defaults.role_defaults(roles_dir, "inference")
    found: dict[tuple[Path, str], validate.Problem] = {}
    for host in sorted(inv.hosts):
        merged = {**model.host_vars(inv, host), **extra}
        services = merged.get("inference_services")
        if not isinstance(services, list) or not all(isinstance(s, dict) for s in services):
            continue  # absent, templated, or mistyped (the spec check reports that)
        file = (
            Path("-e") if "inference_services" in extra else model.var_file(inv, host, "inference_services")
        )
        engine = str(merged.get("inference_engine") or role.get("inference_engine", "llama_cpp"))
        for message in declaration_problems(services, engine):
            found.setdefault((file, message), validate.Problem(file, "inference_services", message))
    if found:
        raise UserError(
            f"{inv.path}: {len(found)} inference service(s) cannot be deployed:\n"
            + "\n".join(f"  {p}" for p in found.values())
        )


def parse_extra_vars(values: tuple[str, ...]) -> dict[str, Any]:
    """-e KEY=VALUE (VALUE read as YAML), -e '{json or yaml mapping}', or -e @FILE, as ansible-playbook."""
    merged: dict[str, Any] = {}
    for raw in values:
        where = f"-e {raw[:60]!r}"
        if raw.startswith("@"):
            file = Path(raw[1:])
            if not file.is_file():
                raise UserError(f"{where}: {file} not found")
            doc = model.read_yaml(file)
            where = str(file)
        elif raw.lstrip().startswith("{"):
            try:
                doc = yaml.safe_load(raw)
            except yaml.YAMLError as exc:
                raise UserError(f"{where}: not a JSON/YAML mapping: {exc}") from exc
        else:
            key, sep, value = raw.partition("=")
            if not sep or not key.strip().isidentifier():
                raise UserError(f"{where}: expected KEY=VALUE, a {{mapping}} or @FILE")
            try:
                doc = {key.strip(): yaml.safe_load(value) if value else ""}
            except yaml.YAMLError as exc:
                raise UserError(f"{where}: {key}: value is not valid YAML: {exc}") from exc
        if not isinstance(doc, dict):
            raise UserError(f"{where}: expected a mapping of variables")
        merged.update(doc)
    return merged
