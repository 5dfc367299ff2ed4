"""Judging NVML readings: pure functions from a NodeReading (+ expectations) to findings."""

from __future__ import annotations

from collections.abc import Callable

import pynvml

from sovinfra.health import xid
from sovinfra.health.expect import Expectations
from sovinfra.health.findings import Finding
from sovinfra.health.models import GpuModel, model_for
from sovinfra.health.readings import GpuReading, NodeReading

HW_SLOWDOWN = (
    pynvml.nvmlClocksEventReasonHwSlowdown
    | pynvml.nvmlClocksEventReasonHwThermalSlowdown
    | pynvml.nvmlClocksEventReasonHwPowerBrakeSlowdown
)
SW_THERMAL = pynvml.nvmlClocksEventReasonSwThermalSlowdown
SW_POWER_CAP = pynvml.nvmlClocksEventReasonSwPowerCap

GpuCheck = Callable[[GpuReading, GpuModel, NodeReading, Expectations], list[Finding]]


def _f(g: GpuReading, check: str, severity: str, message: str, action: str = "") -> Finding:
    return Finding(check, severity, message, action, g.index, g.serial, g.bus_id)


def check_xid(g: GpuReading, _m: GpuModel, node: NodeReading, _e: Expectations) -> list[Finding]:
    short = xid.short_bus_id(g.bus_id)
    seen = [(x, "live") for x in g.xid_events] + [
        (k.xid, "kernel log") for k in node.kernel_xids if k.bus_id == short
    ]
    out = []
    for code, source in seen:
        kind = xid.classify(code)
        if kind == "fatal":
            out.append(
                _f(
                    g,
                    "xid",
                    "fail",
                    f"XID {code} ({xid.describe(code)}) in {source}",
                    "drain the node; reset the GPU, and RMA if it recurs",
                )
            )
        elif kind == "application":
            out.append(
                _f(g, "xid", "ok", f"XID {code} ({xid.describe(code)}) in {source}: an application fault")
            )
        else:
            out.append(
                _f(g, "xid", "warn", f"XID {code} in {source}", "look the code up in NVIDIA's XID catalogue")
            )
    return out or [_f(g, "xid", "ok", "no XID events")]


def check_ecc(g: GpuReading, m: GpuModel, _n: NodeReading, _e: Expectations) -> list[Finding]:
    out = []
    if g.ecc_enabled is False:
        out.append(_f(g, "ecc", "warn", "ECC is disabled", "enable ECC (nvidia-smi -e 1) and reboot"))
    if g.ecc_volatile_uncorrected:
        out.append(
            _f(
                g,
                "ecc",
                "fail",
                f"{g.ecc_volatile_uncorrected} uncorrectable ECC errors since boot",
                "drain the node and reset the GPU",
            )
        )
    elif g.ecc_aggregate_uncorrected:
        out.append(
            _f(
                g,
                "ecc",
                "warn",
                f"{g.ecc_aggregate_uncorrected} uncorrectable ECC errors in the GPU's life",
                "watch for recurrence",
            )
        )
    limit = m.thresholds["ecc_corrected_volatile_warn"]
    if g.ecc_volatile_corrected is not None and g.ecc_volatile_corrected > limit:
        out.append(
            _f(g, "ecc", "warn", f"{g.ecc_volatile_corrected} corrected ECC errors since boot (> {limit:g})")
        )
    return out or [_f(g, "ecc", "ok", "no uncorrectable ECC errors")]


def check_memory_repair(g: GpuReading, m: GpuModel, _n: NodeReading, _e: Expectations) -> list[Finding]:
    """Row remapping on Ampere and newer; retired pages on older GPUs."""
    out = []
    if g.remapped_rows_failure:
        out.append(_f(g, "row_remap", "fail", "row remapping failed", "RMA the GPU"))
    if g.remapped_rows_pending:
        out.append(_f(g, "row_remap", "fail", "a row remap is pending", "reset the GPU to apply it"))
    limit = m.thresholds["remapped_rows_uncorrectable_warn"]
    if g.remapped_rows_uncorrectable is not None and g.remapped_rows_uncorrectable > limit:
        out.append(
            _f(
                g,
                "row_remap",
                "warn",
                f"{g.remapped_rows_uncorrectable} rows remapped for uncorrectable errors (> {limit:g})",
                "plan an RMA",
            )
        )
    if g.remapped_rows_pending is None:  # no row remapping: the older retired-pages mechanism
        total = (g.retired_pages_dbe or 0) + (g.retired_pages_sbe or 0)
        if g.retired_pages_pending:
            out.append(_f(g, "retired_pages", "fail", "a page retirement is pending", "reset the GPU"))
        if total >= m.thresholds["retired_pages_fail"]:
            out.append(_f(g, "retired_pages", "fail", f"{total} retired pages", "RMA the GPU"))
        elif g.retired_pages_dbe:
            out.append(
                _f(g, "retired_pages", "warn", f"{g.retired_pages_dbe} pages retired for double-bit errors")
            )
    return out or [_f(g, "memory_repair", "ok", "no pending or failed memory repairs")]


def check_pcie(g: GpuReading, _m: GpuModel, _n: NodeReading, _e: Expectations) -> list[Finding]:
    out = []
    if g.pcie_width is not None and g.pcie_width_max and g.pcie_width < g.pcie_width_max:
        out.append(
            _f(
                g,
                "pcie",
                "fail",
                f"PCIe link x{g.pcie_width} of x{g.pcie_width_max}",
                "reseat the GPU or riser; check the slot",
            )
        )
    if g.pcie_gen is not None and g.pcie_gen_max and g.pcie_gen < g.pcie_gen_max:
        busy = bool(g.processes)
        # Idle links drop their generation to save power; only a busy GPU's low gen means something.
        out.append(
            _f(
                g,
                "pcie",
                "warn" if busy else "ok",
                f"PCIe gen {g.pcie_gen} of {g.pcie_gen_max}" + ("" if busy else " (idle: power saving)"),
            )
        )
    return out or [_f(g, "pcie", "ok", f"PCIe gen {g.pcie_gen} x{g.pcie_width}")]


def check_nvlink(g: GpuReading, m: GpuModel, _n: NodeReading, _e: Expectations) -> list[Finding]:
    if m.nvlinks == 0:
        return []
    if not g.nvlinks:
        # Seen on a real H100 SXM passed through to a VM: NVML answers for no link at all.
        return [
            _f(
                g,
                "nvlink",
                "warn",
                f"no NVLink state readable (the model has {m.nvlinks})",
                "on a VM with one GPU set the node's health expectation nvlinks: 0",
            )
        ]
    out = []
    active = [link for link in g.nvlinks if link.active]
    if len(active) < m.nvlinks:
        down = sorted({link.link for link in g.nvlinks if not link.active})
        out.append(
            _f(
                g,
                "nvlink",
                "fail",
                f"{len(active)} of {m.nvlinks} NVLinks active (down: {down})",
                "check the baseboard and fabric; reset the GPU",
            )
        )
    limit = m.thresholds["nvlink_errors_warn"]
    for link in g.nvlinks:
        errors = max(link.replay_errors or 0, link.recovery_errors or 0, link.crc_errors or 0)
        if errors > limit:
            out.append(
                _f(g, "nvlink", "warn", f"NVLink {link.link}: {errors} errors since boot (> {limit:g})")
            )
    return out or [_f(g, "nvlink", "ok", f"{len(active)} NVLinks active")]


def check_clocks(g: GpuReading, _m: GpuModel, _n: NodeReading, _e: Expectations) -> list[Finding]:
    reasons = g.clocks_event_reasons
    if reasons is None:
        return []
    if reasons & HW_SLOWDOWN:
        return [
            _f(
                g,
                "clocks",
                "fail",
                f"hardware slowdown active (reasons 0x{reasons:x})",
                "check cooling and power delivery",
            )
        ]
    if reasons & SW_THERMAL:
        return [_f(g, "clocks", "warn", "software thermal slowdown active", "check airflow")]
    if reasons & SW_POWER_CAP:
        return [_f(g, "clocks", "ok", "clocks held by the software power cap (normal under load)")]
    return [_f(g, "clocks", "ok", "no clock slowdown")]


def check_temperature(g: GpuReading, m: GpuModel, _n: NodeReading, _e: Expectations) -> list[Finding]:
    if g.temperature_c is None or g.slowdown_temperature_c is None:
        return []
    margin = m.thresholds["temperature_margin_c"]
    if g.temperature_c >= g.slowdown_temperature_c:
        return [
            _f(
                g,
                "temperature",
                "fail",
                f"{g.temperature_c} C at or above slowdown ({g.slowdown_temperature_c} C)",
                "check cooling",
            )
        ]
    if g.temperature_c >= g.slowdown_temperature_c - margin:
        return [
            _f(
                g,
                "temperature",
                "warn",
                f"{g.temperature_c} C within {margin:g} C of slowdown ({g.slowdown_temperature_c} C)",
            )
        ]
    return [_f(g, "temperature", "ok", f"{g.temperature_c} C (slowdown at {g.slowdown_temperature_c} C)")]


def check_power(g: GpuReading, m: GpuModel, _n: NodeReading, _e: Expectations) -> list[Finding]:
    if g.power_w is None or not g.power_limit_w:
        return []
    pct = m.thresholds["power_over_limit_pct"]
    if g.power_w > g.power_limit_w * (1 + pct / 100):
        return [_f(g, "power", "warn", f"drawing {g.power_w:.0f} W over the {g.power_limit_w:.0f} W limit")]
    return [_f(g, "power", "ok", f"{g.power_w:.0f} W of {g.power_limit_w:.0f} W")]


def check_persistence(g: GpuReading, _m: GpuModel, _n: NodeReading, _e: Expectations) -> list[Finding]:
    if g.persistence_mode is False:
        return [
            _f(
                g,
                "persistence",
                "warn",
                "persistence mode is off",
                "enable nvidia-persistenced (the nvidia_driver role does)",
            )
        ]
    return [_f(g, "persistence", "ok", "persistence mode on")] if g.persistence_mode else []


def check_mig(g: GpuReading, _m: GpuModel, _n: NodeReading, e: Expectations) -> list[Finding]:
    if g.mig_enabled is None:
        return []
    out = []
    if e.mig_enabled is not None and g.mig_enabled != e.mig_enabled:
        want = "on" if e.mig_enabled else "off"
        out.append(
            _f(
                g,
                "mig",
                "fail",
                f"MIG is {'on' if g.mig_enabled else 'off'}, expected {want}",
                f"nvidia-smi -i {g.index} -mig {int(e.mig_enabled)} and reset the GPU",
            )
        )
    if g.mig_pending is not None and g.mig_pending != g.mig_enabled:
        out.append(_f(g, "mig", "warn", "a MIG mode change is pending", "reset the GPU"))
    return out or [_f(g, "mig", "ok", f"MIG {'on' if g.mig_enabled else 'off'}")]


def check_fabric(g: GpuReading, m: GpuModel, _n: NodeReading, _e: Expectations) -> list[Finding]:
    if not m.nvswitch or not m.fabric_info:
        return []
    if g.fabric_state is None:
        return [_f(g, "fabric", "warn", "fabric state not reported (driver before the NVML fabric API)")]
    if g.fabric_state == "not_supported":
        # Seen on real H100 and H200 SXM GPUs passed through to a VM, with a current driver.
        return [
            _f(
                g,
                "fabric",
                "warn",
                "NVML says this GPU has no NVSwitch fabric"
                " (a GPU passed through to a VM, or a board without NVSwitch)",
                "where that is the node's shape set its health expectation nvswitch: false",
            )
        ]
    if g.fabric_state != "completed" or g.fabric_status_ok is False:
        return [
            _f(
                g,
                "fabric",
                "fail",
                f"NVSwitch fabric {g.fabric_state}"
                + (" with an error" if g.fabric_status_ok is False else ""),
                "start nvidia-fabricmanager at the driver's exact version",
            )
        ]
    return [_f(g, "fabric", "ok", "NVSwitch fabric registered")]


def check_processes(g: GpuReading, _m: GpuModel, _n: NodeReading, _e: Expectations) -> list[Finding]:
    if g.processes:
        pids = ", ".join(f"{p.pid} ({p.used_memory_mib} MiB)" for p in g.processes)
        return [
            _f(
                g,
                "processes",
                "warn",
                f"processes hold GPU memory: {pids}",
                "stop leftover jobs before handing the node over",
            )
        ]
    return [_f(g, "processes", "ok", "no processes on the GPU")]


GPU_CHECKS: tuple[GpuCheck, ...] = (
    check_xid, check_ecc, check_memory_repair, check_pcie, check_nvlink, check_clocks,
    check_temperature, check_power, check_persistence, check_mig, check_fabric, check_processes,
)  # fmt: skip


def check_identity(node: NodeReading, e: Expectations) -> list[Finding]:
    """Judge by serial / bus id: a lost GPU shifts every index after it."""
    out = []
    serials = {g.serial for g in node.gpus if g.serial}
    buses = {g.bus_id for g in node.gpus}
    for serial in e.serials:
        if serial not in serials:
            out.append(
                Finding(
                    "gpu_identity",
                    "fail",
                    f"GPU with serial {serial} is missing",
                    "check seating/power; look for XID 79",
                    serial=serial,
                )
            )
    for bus in e.bus_ids:
        if bus not in buses and not any(b.endswith(bus) or bus.endswith(b) for b in buses):
            out.append(
                Finding(
                    "gpu_identity",
                    "fail",
                    f"no GPU at bus id {bus}",
                    "check seating/power; look for XID 79",
                    bus_id=bus,
                )
            )
    if e.serials:
        for g in node.gpus:
            if g.serial and g.serial not in e.serials:
                out.append(
                    _f(
                        g,
                        "gpu_identity",
                        "warn",
                        f"GPU serial {g.serial} is not in the inventory",
                        "a swapped GPU? update the inventory",
                    )
                )
    if e.gpu_count is not None and len(node.gpus) != e.gpu_count:
        out.append(
            Finding(
                "gpu_count",
                "fail",
                f"{len(node.gpus)} GPUs visible, expected {e.gpu_count}",
                "check seating/power; look for XID 79",
            )
        )
    elif e.gpu_count is not None:
        out.append(Finding("gpu_count", "ok", f"{len(node.gpus)} GPUs"))
    return out


def check_versions(node: NodeReading, e: Expectations) -> list[Finding]:
    out = []
    if e.driver_version and node.driver_version != e.driver_version:
        out.append(
            Finding(
                "driver_version",
                "fail",
                f"driver {node.driver_version}, inventory pins {e.driver_version}",
                "converge the nvidia_driver role",
            )
        )
    elif e.driver_version:
        out.append(Finding("driver_version", "ok", f"driver {node.driver_version}"))
    if e.cuda_version and node.cuda_driver_version != e.cuda_version:
        out.append(
            Finding(
                "cuda_version",
                "fail",
                f"driver supports CUDA {node.cuda_driver_version}, inventory pins {e.cuda_version}",
                "converge the nvidia_driver role",
            )
        )
    elif e.cuda_version:
        out.append(Finding("cuda_version", "ok", f"CUDA {node.cuda_driver_version}"))
    return out


def check_node(node: NodeReading, e: Expectations | None = None) -> list[Finding]:
    e = e or Expectations()
    findings = check_identity(node, e) + check_versions(node, e)
    for g in node.gpus:
        m = model_for(g.name, e.thresholds, nvlinks=e.nvlinks, nvswitch=e.nvswitch)
        for check in GPU_CHECKS:
            findings += check(g, m, node, e)
    if not node.gpus and e.gpu_count is None and not e.serials and not e.bus_ids:
        findings.append(Finding("gpu_count", "fail", "no GPUs visible", "check the driver and the hardware"))
    for err in node.collect_errors:
        findings.append(Finding("nvml", "warn", f"NVML read failed: {err}"))
    return findings
