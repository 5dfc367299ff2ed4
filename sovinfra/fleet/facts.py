"""Node facts: one shell command per host, parsed by a pure function (pyinfra fact style)."""

from __future__ import annotations

from typing import Any

from pyinfra.api import FactBase

# Every line is KEY=VALUE so parsing never depends on a tool's table layout.
NODE_FACTS_COMMAND = r"""
. /etc/os-release 2>/dev/null
echo "os_name=${PRETTY_NAME:-unknown}"
echo "os_id=${ID:-unknown}"
echo "os_version=${VERSION_ID:-unknown}"
echo "kernel=$(uname -r)"
echo "arch=$(uname -m)"
echo "cpus=$(nproc)"
echo "cpu_model=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n1)"
echo "mem_kib=$(sed -n 's/^MemTotal:[[:space:]]*\([0-9]*\).*/\1/p' /proc/meminfo)"
lsblk -dnbo NAME,SIZE,TYPE,ROTA 2>/dev/null | while read -r n s t r; do
  [ "$t" = disk ] && echo "disk=$n:$s:$r"
done
for d in /sys/bus/pci/devices/*; do
  [ -e "$d/vendor" ] || continue
  if [ "$(cat "$d/vendor")" = 0x10de ]; then
    case "$(cat "$d/class")" in 0x03*) echo "nvidia_pci=${d##*/}:$(cat "$d/device")";; esac
  fi
done
sb=$(ls /sys/firmware/efi/efivars/SecureBoot-* 2>/dev/null | head -n1)
if [ -z "$sb" ]; then echo "secure_boot=unavailable"
elif [ "$(od -An -t u1 "$sb" | awk '{print $NF}')" = 1 ]; then echo "secure_boot=enabled"
else echo "secure_boot=disabled"; fi
true
"""


def parse_node_facts(lines: list[str]) -> dict[str, Any]:
    facts: dict[str, Any] = {"disks": [], "nvidia_pci": []}
    for line in lines:
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "disk":
            name, size, rota = ([*value.split(":"), "", "", ""])[:3]
            facts["disks"].append(
                {"name": name, "bytes": int(size) if size.isdigit() else None, "rotational": rota == "1"}
            )
        elif key == "nvidia_pci":
            bus_id, _, device = value.rpartition(":")
            facts["nvidia_pci"].append({"bus_id": bus_id, "device_id": device})
        elif key in ("cpus", "mem_kib"):
            facts[key] = int(value) if value.isdigit() else None
        else:
            facts[key] = value.strip()
    return facts


class NodeFacts(FactBase):
    """OS, kernel, CPU, memory, disks, NVIDIA devices on PCI and Secure Boot state."""

    def command(self) -> str:
        return "sh -c " + _quote(NODE_FACTS_COMMAND)

    def process(self, output: list[str]) -> dict[str, Any]:
        return parse_node_facts(output)


def _quote(script: str) -> str:
    import shlex

    return shlex.quote(script)
