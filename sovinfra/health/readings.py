"""What a health sweep read from NVML, as plain data. None means the GPU/driver does not support it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class NvLink:
    link: int
    active: bool
    replay_errors: int | None = None
    recovery_errors: int | None = None
    crc_errors: int | None = None


@dataclass
class GpuProcess:
    pid: int
    used_memory_mib: int | None


@dataclass
class GpuReading:
    index: int
    name: str
    serial: str | None
    uuid: str
    bus_id: str
    memory_total_mib: int | None = None
    memory_used_mib: int | None = None
    pcie_gen: int | None = None
    pcie_gen_max: int | None = None
    pcie_width: int | None = None
    pcie_width_max: int | None = None
    temperature_c: int | None = None
    slowdown_temperature_c: int | None = None
    shutdown_temperature_c: int | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    clocks_event_reasons: int | None = None
    ecc_enabled: bool | None = None
    ecc_volatile_uncorrected: int | None = None
    ecc_volatile_corrected: int | None = None
    ecc_aggregate_uncorrected: int | None = None
    retired_pages_dbe: int | None = None
    retired_pages_sbe: int | None = None
    retired_pages_pending: bool | None = None
    remapped_rows_correctable: int | None = None
    remapped_rows_uncorrectable: int | None = None
    remapped_rows_pending: bool | None = None
    remapped_rows_failure: bool | None = None
    nvlinks: list[NvLink] = field(default_factory=list)
    persistence_mode: bool | None = None
    mig_enabled: bool | None = None
    mig_pending: bool | None = None
    fabric_state: str | None = None  # not_supported, not_started, in_progress, completed
    fabric_status_ok: bool | None = None
    processes: list[GpuProcess] = field(default_factory=list)
    xid_events: list[int] = field(default_factory=list)  # seen live during the check window


@dataclass
class KernelXid:
    bus_id: str
    xid: int
    message: str


@dataclass
class NodeReading:
    driver_version: str
    cuda_driver_version: str  # "12.4"
    gpus: list[GpuReading]
    kernel_xids: list[KernelXid] = field(default_factory=list)
    kernel_log_readable: bool = False
    collect_errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeReading:
        gpu_fields = {f.name for f in fields(GpuReading)}
        gpus = []
        for raw in data.get("gpus", []):
            g = {k: v for k, v in raw.items() if k in gpu_fields}
            g["nvlinks"] = [NvLink(**n) for n in raw.get("nvlinks", [])]
            g["processes"] = [GpuProcess(**p) for p in raw.get("processes", [])]
            gpus.append(GpuReading(**g))
        return cls(
            driver_version=data["driver_version"],
            cuda_driver_version=data["cuda_driver_version"],
            gpus=gpus,
            kernel_xids=[KernelXid(**x) for x in data.get("kernel_xids", [])],
            kernel_log_readable=bool(data.get("kernel_log_readable", False)),
            collect_errors=list(data.get("collect_errors", [])),
        )
