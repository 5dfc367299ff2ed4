"""GPU models and their thresholds, as data (models.yml), overridable per inventory group."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

THRESHOLD_KEYS = (
    "ecc_corrected_volatile_warn",
    "remapped_rows_uncorrectable_warn",
    "retired_pages_fail",
    "temperature_margin_c",
    "power_over_limit_pct",
    "nvlink_errors_warn",
)


@dataclass(frozen=True)
class GpuModel:
    name: str
    nvlinks: int
    nvswitch: bool
    row_remapping: bool
    thresholds: dict[str, float]
    fabric_info: bool = True


@lru_cache(maxsize=1)
def _data() -> dict[str, Any]:
    return yaml.safe_load((Path(__file__).parent / "models.yml").read_text())


def model_for(
    gpu_name: str,
    overrides: dict[str, float] | None = None,
    nvlinks: int | None = None,
    nvswitch: bool | None = None,
) -> GpuModel:
    data = _data()
    lowered = gpu_name.lower()
    for entry in data["models"]:
        if any(m.lower() in lowered for m in entry["match"]):
            thresholds = {**data["defaults"], **entry.get("thresholds", {}), **(overrides or {})}
            return GpuModel(
                entry["name"],
                entry["nvlinks"] if nvlinks is None else nvlinks,
                entry["nvswitch"] if nvswitch is None else nvswitch,
                entry["row_remapping"],
                thresholds,
                entry.get("fabric_info", True),
            )
    raise AssertionError("models.yml must end with a catch-all model")
