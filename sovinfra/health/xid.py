"""XID codes: which are fatal to the GPU, which are application faults, and kernel-log parsing (pure)."""

from __future__ import annotations

import re

from sovinfra.health.readings import KernelXid

# From NVIDIA's XID catalogue and what large fleets act on: these need a reset, a drain or an RMA.
FATAL = {
    48: "double-bit ECC error",
    56: "display engine error",
    57: "error programming video memory interface",
    58: "unstable video memory interface",
    62: "internal micro-controller halt",
    63: "ECC page retirement or row remapping recording event",
    64: "ECC page retirement or row remapper recording failure",
    65: "video processor exception",
    68: "NVDEC0 exception",
    69: "graphics engine class error",
    73: "NVENC2 error",
    74: "NVLink error",
    79: "GPU has fallen off the bus",
    80: "corrupted data sent to GPU",
    81: "VGA subsystem error",
    92: "high single-bit ECC error rate",
    119: "GSP RPC timeout",
    120: "GSP error",
}
# Caused by the program running on the GPU, not the GPU: informational for node health.
APPLICATION = {
    13: "graphics engine exception (application)",
    31: "GPU memory page fault (application)",
    43: "GPU stopped processing (application)",
    45: "preemptive cleanup, due to previous errors (application)",
}

# NVRM: Xid (PCI:0000:18:00): 79, pid=1234, name=python, GPU has fallen off the bus.
_KERNEL_XID = re.compile(
    r"NVRM: Xid \(PCI:([0-9A-Fa-f]{4}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2})[^)]*\): (\d+),?(.*)"
)


def classify(xid: int) -> str:
    if xid in FATAL:
        return "fatal"
    if xid in APPLICATION:
        return "application"
    return "other"


def describe(xid: int) -> str:
    return FATAL.get(xid) or APPLICATION.get(xid) or "see NVIDIA's XID catalogue"


def parse_kernel_log(lines: list[str]) -> list[KernelXid]:
    found = []
    for line in lines:
        m = _KERNEL_XID.search(line)
        if m:
            found.append(
                KernelXid(bus_id=m.group(1).lower(), xid=int(m.group(2)), message=m.group(3).strip())
            )
    return found


def short_bus_id(bus_id: str) -> str:
    """NVML's 0000:18:00.0 (or 00000000:18:00.0) as the kernel log names it: 0000:18:00."""
    domain, bus, rest = bus_id.lower().split(":", 2)
    return f"{domain[-4:]}:{bus}:{rest.split('.')[0]}"
