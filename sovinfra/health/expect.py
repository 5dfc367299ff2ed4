"""What the inventory expects of a node's GPUs (written by the health_agent role; validated on load)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from sovinfra.errors import UserError
from sovinfra.health.models import THRESHOLD_KEYS


@dataclass
class Expectations:
    gpu_count: int | None = None
    serials: list[str] = field(default_factory=list)
    bus_ids: list[str] = field(default_factory=list)
    driver_version: str | None = None
    cuda_version: str | None = None
    mig_enabled: bool | None = None
    nvlinks: int | None = None  # overrides the model: e.g. 0 for one SXM GPU passed through to a VM
    nvswitch: bool | None = None  # overrides the model: whether a fabric manager must have the GPU
    thresholds: dict[str, float] = field(default_factory=dict)


def _str_list(data: dict[str, Any], key: str, where: str) -> list[str]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UserError(f"{where}: {key}: must be a list of strings")
    return [v.lower() if key == "bus_ids" else v for v in value]


def from_mapping(data: Any, where: str) -> Expectations:
    if data is None:
        return Expectations()
    if not isinstance(data, dict):
        raise UserError(f"{where}: must be a mapping")
    known = {f.name for f in fields(Expectations)}
    for key in data:
        if key not in known:
            raise UserError(f"{where}: {key}: unknown key (known: {', '.join(sorted(known))})")
    for key in ("gpu_count", "nvlinks"):
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise UserError(f"{where}: {key}: must be a whole number >= 0")
    count = data.get("gpu_count")
    for key in ("driver_version", "cuda_version"):
        if data.get(key) is not None and not isinstance(data[key], str | int | float):
            raise UserError(f"{where}: {key}: must be a version string")
    for key in ("mig_enabled", "nvswitch"):
        if data.get(key) is not None and not isinstance(data[key], bool):
            raise UserError(f"{where}: {key}: must be true or false")
    mig = data.get("mig_enabled")
    thresholds = data.get("thresholds") or {}
    if not isinstance(thresholds, dict):
        raise UserError(f"{where}: thresholds: must be a mapping")
    for key, value in thresholds.items():
        if key not in THRESHOLD_KEYS:
            raise UserError(
                f"{where}: thresholds.{key}: unknown threshold (known: {', '.join(THRESHOLD_KEYS)})"
            )
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UserError(f"{where}: thresholds.{key}: must be a number")
    return Expectations(
        gpu_count=count,
        serials=_str_list(data, "serials", where),
        bus_ids=_str_list(data, "bus_ids", where),
        driver_version=str(data["driver_version"]) if data.get("driver_version") is not None else None,
        cuda_version=str(data["cuda_version"]) if data.get("cuda_version") is not None else None,
        mig_enabled=mig,
        nvlinks=data.get("nvlinks"),
        nvswitch=data.get("nvswitch"),
        thresholds={k: float(v) for k, v in thresholds.items()},
    )


def load(path: Path) -> Expectations:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {exc}") from exc
    return from_mapping(data, str(path))
