#!/bin/sh
# Read-only: what the driver tasks decide on, in one round trip (KEY=VALUE lines).
sb=unknown
if command -v mokutil >/dev/null 2>&1; then
  case "$(mokutil --sb-state 2>/dev/null)" in
    *enabled*) sb=enabled ;;
    *disabled*) sb=disabled ;;
  esac
elif ls /sys/firmware/efi/efivars/SecureBoot-* >/dev/null 2>&1; then
  # The variable's 5th byte is the state (after 4 bytes of attributes).
  v=$(od -An -t u1 -j 4 -N 1 /sys/firmware/efi/efivars/SecureBoot-* 2>/dev/null | tr -d ' ')
  [ "$v" = 1 ] && sb=enabled || sb=disabled
elif [ ! -d /sys/firmware/efi ]; then
  sb=disabled  # legacy BIOS boot: no Secure Boot
fi
echo "secure_boot=$sb"
echo "loaded_version=$(cat /sys/module/nvidia/version 2>/dev/null)"
echo "nouveau_loaded=$([ -d /sys/module/nouveau ] && echo yes || echo no)"
echo "installed_module_version=$(modinfo -F version nvidia 2>/dev/null)"
