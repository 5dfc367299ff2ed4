"""Reading the local GPUs through pynvml (the I/O edge of the health checks)."""

from __future__ import annotations

import ctypes
import errno
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pynvml

from sovinfra.health import xid
from sovinfra.health.readings import GpuProcess, GpuReading, NodeReading, NvLink

T = TypeVar("T")
_FABRIC_STATES = {0: "not_supported", 1: "not_started", 2: "in_progress", 3: "completed"}
# What "this GPU or driver can't tell" looks like; anything else is a real error worth reporting.
_UNSUPPORTED = (
    pynvml.NVML_ERROR_NOT_SUPPORTED,
    pynvml.NVML_ERROR_FUNCTION_NOT_FOUND,
    pynvml.NVML_ERROR_INVALID_ARGUMENT,
    pynvml.NVML_ERROR_NOT_FOUND,
)


class NvmlUnavailable(Exception):
    """No usable NVIDIA driver: the health agent cannot run (exit 2)."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _Reader:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def get(self, what: str, fn: Callable[[], T]) -> T | None:
        try:
            return fn()
        except pynvml.NVMLError as exc:
            if exc.value not in _UNSUPPORTED:
                self.errors.append(f"{what}: {exc}")
            return None


def _nvlinks(r: _Reader, h: Any) -> list[NvLink]:
    links = []
    for link in range(pynvml.NVML_NVLINK_MAX_LINKS):
        try:
            state = pynvml.nvmlDeviceGetNvLinkState(h, link)
        except pynvml.NVMLError:
            continue  # no such link on this GPU

        def counter(kind: int, link: int = link) -> int | None:
            return r.get(
                f"nvlink {link} errors", lambda: int(pynvml.nvmlDeviceGetNvLinkErrorCounter(h, link, kind))
            )

        links.append(
            NvLink(
                link=link,
                active=bool(state),
                replay_errors=counter(pynvml.NVML_NVLINK_ERROR_DL_REPLAY),
                recovery_errors=counter(pynvml.NVML_NVLINK_ERROR_DL_RECOVERY),
                crc_errors=counter(pynvml.NVML_NVLINK_ERROR_DL_CRC_FLIT),
            )
        )
    return links


def _fabric(r: _Reader, h: Any) -> tuple[str | None, bool | None]:
    info = pynvml.c_nvmlGpuFabricInfo_t()
    got = r.get("fabric info", lambda: pynvml.nvmlDeviceGetGpuFabricInfo(h, ctypes.byref(info)))
    if got is None:
        return None, None
    return _FABRIC_STATES.get(int(info.state), str(info.state)), int(info.status) == pynvml.NVML_SUCCESS


def _processes(r: _Reader, h: Any) -> list[GpuProcess]:
    procs = r.get("processes", lambda: pynvml.nvmlDeviceGetComputeRunningProcesses(h)) or []
    out = []
    for p in procs:
        used = getattr(p, "usedGpuMemory", None)
        out.append(
            GpuProcess(pid=int(p.pid), used_memory_mib=int(used) // 2**20 if used is not None else None)
        )
    return out


def _gpu(r: _Reader, index: int) -> GpuReading:
    h = pynvml.nvmlDeviceGetHandleByIndex(index)
    mem = r.get("memory", lambda: pynvml.nvmlDeviceGetMemoryInfo(h))
    ecc = r.get("ecc mode", lambda: pynvml.nvmlDeviceGetEccMode(h))
    mig = r.get("mig mode", lambda: pynvml.nvmlDeviceGetMigMode(h))
    remap = r.get("remapped rows", lambda: pynvml.nvmlDeviceGetRemappedRows(h))
    unc, vol, agg = (
        pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
        pynvml.NVML_VOLATILE_ECC,
        pynvml.NVML_AGGREGATE_ECC,
    )
    dbe = pynvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR
    sbe = pynvml.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS
    power = r.get("power", lambda: pynvml.nvmlDeviceGetPowerUsage(h))
    limit = r.get("power limit", lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(h))
    temp_threshold = pynvml.nvmlDeviceGetTemperatureThreshold
    fabric_state, fabric_ok = _fabric(r, h)
    retired_dbe = r.get("retired pages", lambda: pynvml.nvmlDeviceGetRetiredPages(h, dbe))
    retired_sbe = r.get("retired pages", lambda: pynvml.nvmlDeviceGetRetiredPages(h, sbe))
    pending = r.get("retired pages pending", lambda: pynvml.nvmlDeviceGetRetiredPagesPendingStatus(h))
    return GpuReading(
        index=index,
        name=_text(pynvml.nvmlDeviceGetName(h)),
        serial=r.get("serial", lambda: _text(pynvml.nvmlDeviceGetSerial(h))),
        uuid=_text(pynvml.nvmlDeviceGetUUID(h)),
        bus_id=_text(pynvml.nvmlDeviceGetPciInfo(h).busId).lower(),
        memory_total_mib=int(mem.total) // 2**20 if mem else None,
        memory_used_mib=int(mem.used) // 2**20 if mem else None,
        pcie_gen=r.get("pcie gen", lambda: int(pynvml.nvmlDeviceGetCurrPcieLinkGeneration(h))),
        pcie_gen_max=r.get("pcie max gen", lambda: int(pynvml.nvmlDeviceGetMaxPcieLinkGeneration(h))),
        pcie_width=r.get("pcie width", lambda: int(pynvml.nvmlDeviceGetCurrPcieLinkWidth(h))),
        pcie_width_max=r.get("pcie max width", lambda: int(pynvml.nvmlDeviceGetMaxPcieLinkWidth(h))),
        temperature_c=r.get("temperature", lambda: int(pynvml.nvmlDeviceGetTemperature(h, 0))),
        slowdown_temperature_c=r.get(
            "slowdown threshold", lambda: int(temp_threshold(h, pynvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN))
        ),
        shutdown_temperature_c=r.get(
            "shutdown threshold", lambda: int(temp_threshold(h, pynvml.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN))
        ),
        power_w=power / 1000 if power is not None else None,
        power_limit_w=limit / 1000 if limit is not None else None,
        clocks_event_reasons=r.get(
            "clock events", lambda: int(pynvml.nvmlDeviceGetCurrentClocksEventReasons(h))
        ),
        ecc_enabled=bool(ecc[0]) if ecc else None,
        ecc_volatile_uncorrected=r.get("ecc", lambda: int(pynvml.nvmlDeviceGetTotalEccErrors(h, unc, vol))),
        ecc_volatile_corrected=r.get(
            "ecc",
            lambda: int(pynvml.nvmlDeviceGetTotalEccErrors(h, pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, vol)),
        ),
        ecc_aggregate_uncorrected=r.get("ecc", lambda: int(pynvml.nvmlDeviceGetTotalEccErrors(h, unc, agg))),
        retired_pages_dbe=len(retired_dbe) if retired_dbe is not None else None,
        retired_pages_sbe=len(retired_sbe) if retired_sbe is not None else None,
        retired_pages_pending=bool(pending) if pending is not None else None,
        remapped_rows_correctable=int(remap[0]) if remap else None,
        remapped_rows_uncorrectable=int(remap[1]) if remap else None,
        remapped_rows_pending=bool(remap[2]) if remap else None,
        remapped_rows_failure=bool(remap[3]) if remap else None,
        nvlinks=_nvlinks(r, h),
        persistence_mode=r.get("persistence", lambda: bool(pynvml.nvmlDeviceGetPersistenceMode(h))),
        mig_enabled=bool(mig[0]) if mig else None,
        mig_pending=bool(mig[1]) if mig else None,
        fabric_state=fabric_state,
        fabric_status_ok=fabric_ok,
        processes=_processes(r, h),
    )


def _watch_xids(r: _Reader, gpus: list[GpuReading], window_s: float) -> None:
    """Wait up to window_s for XID events on every GPU (NVML delivers them live, not history)."""
    try:
        event_set = pynvml.nvmlEventSetCreate()
    except pynvml.NVMLError as exc:
        r.errors.append(f"xid events: {exc}")
        return
    by_uuid = {g.uuid: g for g in gpus}
    try:
        for g in gpus:
            h = pynvml.nvmlDeviceGetHandleByIndex(g.index)

            def register(h: Any = h) -> None:
                pynvml.nvmlDeviceRegisterEvents(h, pynvml.nvmlEventTypeXidCriticalError, event_set)

            r.get(f"xid events gpu {g.index}", register)
        deadline = time.monotonic() + window_s
        while True:
            remaining_ms = max(0, int((deadline - time.monotonic()) * 1000))
            try:
                data = pynvml.nvmlEventSetWait_v2(event_set, remaining_ms)
            except pynvml.NVMLError as exc:
                if exc.value != pynvml.NVML_ERROR_TIMEOUT:
                    r.errors.append(f"xid events: {exc}")
                break
            uuid = _text(pynvml.nvmlDeviceGetUUID(data.device))
            if uuid in by_uuid:
                by_uuid[uuid].xid_events.append(int(data.eventData))
            if remaining_ms == 0:
                break
    finally:
        pynvml.nvmlEventSetFree(event_set)


def read_kernel_log() -> tuple[list[str], bool]:
    """Kernel messages since boot from /dev/kmsg (root); ([], False) when it cannot be read."""
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return [], False
    lines: list[str] = []
    try:
        while True:
            try:
                record = os.read(fd, 8192)
            except OSError as exc:
                if exc.errno == errno.EAGAIN:
                    break
                if exc.errno == errno.EPIPE:  # overwritten records: skip on
                    continue
                return lines, False
            if not record:
                break
            lines.append(record.decode(errors="replace").split(";", 1)[-1].strip())
    finally:
        os.close(fd)
    return lines, True


def _simulator_detail() -> str:
    """The lab's NVML simulator says which profile key is wrong; a real driver has no such call."""
    lib = getattr(pynvml, "nvmlLib", None)
    hook = getattr(lib, "sovsim_last_error", None) if lib is not None else None
    if hook is None:
        return ""
    hook.restype = ctypes.c_char_p
    detail = hook()
    return f" ({detail.decode()})" if detail else ""


def collect(xid_window_s: float = 0.0, kernel_log: bool = True) -> NodeReading:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        if isinstance(exc, pynvml.NVMLError_LibraryNotFound):
            raise NvmlUnavailable("no NVIDIA driver: libnvidia-ml.so.1 could not be loaded") from exc
        raise NvmlUnavailable(f"NVML did not initialise: {exc}{_simulator_detail()}") from exc
    try:
        r = _Reader()
        cuda = r.get("cuda version", pynvml.nvmlSystemGetCudaDriverVersion_v2)
        gpus = [_gpu(r, i) for i in range(pynvml.nvmlDeviceGetCount())]
        _watch_xids(r, gpus, xid_window_s)
        reading = NodeReading(
            driver_version=_text(pynvml.nvmlSystemGetDriverVersion()),
            cuda_driver_version=f"{cuda // 1000}.{cuda % 1000 // 10}" if cuda else "",
            gpus=gpus,
            collect_errors=r.errors,
        )
    finally:
        pynvml.nvmlShutdown()
    if kernel_log:
        lines, readable = read_kernel_log()
        reading.kernel_xids = xid.parse_kernel_log(lines)
        reading.kernel_log_readable = readable
    return reading
