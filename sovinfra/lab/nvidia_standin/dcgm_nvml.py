"""NVML readings the stand-in dcgmi judges: GPUs with ECC, retirement, remap, PCIe and persistence."""

import ctypes

from nvml_ctypes import NVML, NVMLError

__all__ = ["DiagNVML", "NVMLError"]

UNCORRECTED, VOLATILE = 1, 0  # nvmlMemoryErrorType_t, nvmlEccCounterType_t
PCIE = ("nvmlDeviceGetCurrPcieLinkGeneration", "nvmlDeviceGetMaxPcieLinkGeneration",
        "nvmlDeviceGetCurrPcieLinkWidth", "nvmlDeviceGetMaxPcieLinkWidth")  # fmt: skip


class DiagNVML(NVML):
    def _maybe(self, name: str, handle: ctypes.c_void_p, *out: object) -> bool:
        """Call an NVML getter; False when the GPU does not support it (the reading is then None)."""
        try:
            self._call(name, handle, *out)
            return True
        except NVMLError:
            return False

    def readings(self) -> list[dict]:
        out = []
        for g in self.gpus():
            handle = ctypes.c_void_p()
            self._call("nvmlDeviceGetHandleByIndex_v2", ctypes.c_uint(g["index"]), ctypes.byref(handle))
            ecc = ctypes.c_ulonglong()
            has_ecc = self._maybe(
                "nvmlDeviceGetTotalEccErrors",
                handle,
                ctypes.c_int(UNCORRECTED),
                ctypes.c_int(VOLATILE),
                ctypes.byref(ecc),
            )
            pending = ctypes.c_int()
            has_retired = self._maybe("nvmlDeviceGetRetiredPagesPendingStatus", handle, ctypes.byref(pending))
            rows = [ctypes.c_uint() for _ in range(4)]
            has_remap = self._maybe("nvmlDeviceGetRemappedRows", handle, *(ctypes.byref(r) for r in rows))
            persistence = ctypes.c_int()
            has_persistence = self._maybe("nvmlDeviceGetPersistenceMode", handle, ctypes.byref(persistence))
            link = [ctypes.c_uint() for _ in PCIE]
            has_pcie = all(
                self._maybe(name, handle, ctypes.byref(v)) for name, v in zip(PCIE, link, strict=True)
            )
            out.append(
                {
                    **g,
                    "ecc_volatile_uncorrected": ecc.value if has_ecc else None,
                    "retired_pending": bool(pending.value) if has_retired else None,
                    "remap_pending": bool(rows[2].value) if has_remap else None,
                    "remap_failure": bool(rows[3].value) if has_remap else None,
                    "persistence": bool(persistence.value) if has_persistence else None,
                    "pcie": {
                        "gen": link[0].value,
                        "max_gen": link[1].value,
                        "width": link[2].value,
                        "max_width": link[3].value,
                    }
                    if has_pcie
                    else None,
                }
            )
        return out
