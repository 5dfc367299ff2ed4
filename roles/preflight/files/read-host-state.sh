#!/bin/sh
# Everything preflight judges, read in one round trip; prints KEY=VALUE lines. Changes nothing.
echo "free_bytes=$(df --output=avail -B1 / | tail -n1 | tr -d ' ')"
sb=$(ls /sys/firmware/efi/efivars/SecureBoot-* 2>/dev/null | head -n1)
if [ -z "$sb" ]; then echo "secure_boot=unavailable"
elif [ "$(od -An -t u1 "$sb" | awk '{print $NF}')" = 1 ]; then echo "secure_boot=enabled"
else echo "secure_boot=disabled"; fi
gpus=""
for d in /sys/bus/pci/devices/*; do
  [ -e "$d/vendor" ] || continue
  if [ "$(cat "$d/vendor")" = 0x10de ]; then
    case "$(cat "$d/class")" in 0x03*) gpus="$gpus ${d##*/}";; esac
  fi
done
echo "nvidia_pci=${gpus# }"
if command -v apt-cache >/dev/null; then
  candidate=$(apt-cache policy "linux-headers-$(uname -r)" 2>/dev/null | sed -n 's/^ *Candidate: //p')
  echo "kernel_headers_candidate=${candidate:-(none)}"
fi
