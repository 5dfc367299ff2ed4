"""The links a GPU moves data over, read through NVML (the simulator), and the bandwidth each gives: what
the stand-in nvbandwidth and all_reduce_perf answer with, so a downtrained PCIe link or a down NVLink in
the GPU profile shows as the figures the real tools would measure on such a GPU."""

import ctypes

from nvml_ctypes import NVML, NVMLError

__all__ = ["LinkNVML", "NVMLError", "pair_gbps", "pcie_gbps", "ring_gbps"]

PCIE_LANE_GBPS = {1: 0.25, 2: 0.5, 3: 0.985, 4: 1.969, 5: 3.938, 6: 7.563}  # per lane, one direction
NVLINK_GBPS = 25.0  # one NVLink 4 link, one direction
MAX_LINKS = 18  # NVML_NVLINK_MAX_LINKS on Hopper
COPY_ENGINE = 0.86  # what a copy engine achieves of a link's raw rate
NVLS = 1.063  # NVLink SHARP: NCCL's all_reduce bus bandwidth beats the links' raw rate on NVSwitch
P2P_OVER_PCIE = 0.8


class PciInfo(ctypes.Structure):  # nvmlPciInfo_t
    _fields_ = [
        ("busIdLegacy", ctypes.c_char * 16),
        ("domain", ctypes.c_uint),
        ("bus", ctypes.c_uint),
        ("device", ctypes.c_uint),
        ("pciDeviceId", ctypes.c_uint),
        ("pciSubSystemId", ctypes.c_uint),
        ("busId", ctypes.c_char * 32),
    ]


class LinkNVML(NVML):
    def links(self) -> list[dict]:
        out = []
        for g in self.gpus():
            handle = ctypes.c_void_p()
            self._call("nvmlDeviceGetHandleByIndex_v2", ctypes.c_uint(g["index"]), ctypes.byref(handle))
            gen, width = ctypes.c_uint(), ctypes.c_uint()
            self._call("nvmlDeviceGetCurrPcieLinkGeneration", handle, ctypes.byref(gen))
            self._call("nvmlDeviceGetCurrPcieLinkWidth", handle, ctypes.byref(width))
            pci = PciInfo()
            self._call("nvmlDeviceGetPciInfo_v3", handle, ctypes.byref(pci))
            active = 0
            for link in range(MAX_LINKS):
                state = ctypes.c_int()
                try:
                    self._call("nvmlDeviceGetNvLinkState", handle, ctypes.c_uint(link), ctypes.byref(state))
                except NVMLError:
                    break  # not supported, or past the GPU's last link
                active += state.value == 1
            reading = {
                "pci_bus": pci.bus,
                "pcie_gen": gen.value,
                "pcie_width": width.value,
                "nvlinks": active,
            }
            out.append({**g, **reading})
        return out


def pcie_gbps(g: dict) -> float:
    return PCIE_LANE_GBPS.get(g["pcie_gen"], 0.0) * g["pcie_width"] * COPY_ENGINE


def pair_gbps(a: dict, b: dict) -> float:
    """One GPU reading another: over NVLink (through the switch: the fewer links of the two), else PCIe."""
    if a["nvlinks"] and b["nvlinks"]:
        return min(a["nvlinks"], b["nvlinks"]) * NVLINK_GBPS * COPY_ENGINE
    return min(pcie_gbps(a), pcie_gbps(b)) * P2P_OVER_PCIE


def ring_gbps(gpus: list[dict]) -> float:
    """all_reduce bus bandwidth at a large message: the slowest GPU's links hold the whole ring back."""
    if all(g["nvlinks"] for g in gpus):
        return min(g["nvlinks"] for g in gpus) * NVLINK_GBPS * NVLS
    return min(pcie_gbps(g) for g in gpus) * P2P_OVER_PCIE
