#!/bin/sh
# A host's state, read once, one vocabulary, for every reader: `sovinfra facts` (pyinfra), preflight and
# the driver role (ansible.builtin.script), all parsed by sovinfra/fleet/facts.py. Changes nothing.
# Every line is KEY=VALUE, so parsing never depends on a tool's table layout.
. /etc/os-release 2>/dev/null
echo "os_name=${PRETTY_NAME:-unknown}"
echo "os_id=${ID:-unknown}"
echo "os_version=${VERSION_ID:-unknown}"
echo "kernel=$(uname -r)"
echo "arch=$(uname -m)"
echo "cpus=$(nproc)"
echo "cpu_model=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n1)"
echo "mem_kib=$(sed -n 's/^MemTotal:[[:space:]]*\([0-9]*\).*/\1/p' /proc/meminfo)"
echo "free_bytes=$(df --output=avail -B1 / | tail -n1 | tr -d ' ')"
lsblk -dnbo NAME,SIZE,TYPE,ROTA 2>/dev/null | while read -r n s t r; do
  [ "$t" = disk ] && echo "disk=$n:$s:$r"
done
# NVIDIA display/3D controllers on PCI (vendor 0x10de, class 0x03xxxx): one line each, bus id:device id.
for d in /sys/bus/pci/devices/*; do
  [ -e "$d/vendor" ] || continue
  if [ "$(cat "$d/vendor")" = 0x10de ]; then
    case "$(cat "$d/class")" in 0x03*) echo "nvidia_pci=${d##*/}:$(cat "$d/device")";; esac
  fi
done
# Secure Boot: enabled, disabled, or unavailable (no EFI variable: a legacy BIOS boot, or no efivarfs).
# The variable's 5th byte is the state (after 4 bytes of attributes); mokutil where efivars are not mounted.
sb=unavailable
var=$(ls /sys/firmware/efi/efivars/SecureBoot-* 2>/dev/null | head -n1)
if [ -n "$var" ]; then
  [ "$(od -An -t u1 -j 4 -N 1 "$var" | tr -d ' ')" = 1 ] && sb=enabled || sb=disabled
elif command -v mokutil >/dev/null 2>&1; then
  case "$(mokutil --sb-state 2>/dev/null)" in
    *enabled*) sb=enabled ;;
    *disabled*) sb=disabled ;;
  esac
fi
echo "secure_boot=$sb"
if command -v apt-cache >/dev/null 2>&1; then
  candidate=$(apt-cache policy "linux-headers-$(uname -r)" 2>/dev/null | sed -n 's/^ *Candidate: //p')
  echo "kernel_headers_candidate=${candidate:-(none)}"
fi
# Whether apt already reads the site's package snapshot (the base role's source): before that, what
# apt-cache says is about other sources, or none.
echo "site_apt_sources=$([ -e /etc/apt/sources.list.d/sovinfra-site.sources ] && echo yes || echo no)"
echo "nvidia_loaded_version=$(cat /sys/module/nvidia/version 2>/dev/null)"
echo "nvidia_module_version=$(modinfo -F version nvidia 2>/dev/null)"
echo "nouveau_loaded=$([ -d /sys/module/nouveau ] && echo yes || echo no)"
true
