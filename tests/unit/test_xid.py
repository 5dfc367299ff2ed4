"""XID classification and kernel-log history (the part the lab cannot inject)."""

from __future__ import annotations

from sovinfra.health import checks, xid
from sovinfra.health.readings import GpuReading, NodeReading

KMSG = [
    "NVRM: loading NVIDIA UNIX Open Kernel Module for x86_64  570.124.06",
    "NVRM: Xid (PCI:0000:18:00): 79, pid=2133, name=python3, GPU has fallen off the bus.",
    "NVRM: Xid (PCI:0000:2a:00): 31, pid=881, name=vllm, Ch 00000008, intr 00000000. MMU Fault",
    "NVRM: Xid (PCI:0000:2A:00): 94, pid='<unknown>', name=<unknown>, Contained ECC error.",
    "nvidia-nvswitch0: SXid (PCI:0000:05:00.0): 12028, Non-fatal, Link 44 egress non-posted PRIV error",
]


def test_parse_kernel_log() -> None:
    found = xid.parse_kernel_log(KMSG)
    assert [(k.bus_id, k.xid) for k in found] == [("0000:18:00", 79), ("0000:2a:00", 31), ("0000:2a:00", 94)]


def test_classification_table() -> None:
    assert xid.classify(79) == "fatal" and xid.classify(48) == "fatal" and xid.classify(119) == "fatal"
    assert {xid.classify(x) for x in (13, 31, 43, 45)} == {"application"}
    assert xid.classify(94) == "other"
    assert xid.short_bus_id("00000000:2A:00.0") == "0000:2a:00"


def test_kernel_history_is_matched_to_the_gpu_by_bus_id() -> None:
    gpus = [
        GpuReading(
            index=i, name="NVIDIA H100 80GB HBM3", serial=f"S{i}", uuid=f"U{i}", bus_id=f"00000000:{bus}:00.0"
        )
        for i, bus in enumerate(("18", "2a", "3a"))
    ]
    node = NodeReading("580.95.05", "13.0", gpus, kernel_xids=xid.parse_kernel_log(KMSG))
    found = {(f.check, f.severity, f.serial) for f in checks.check_node(node) if f.check == "xid"}
    assert ("xid", "fail", "S0") in found  # 79 on 18:00
    assert ("xid", "ok", "S1") in found and ("xid", "warn", "S1") in found  # 31 is an app fault; 94 unknown
    assert found >= {("xid", "ok", "S2")}  # nothing on 3a:00
