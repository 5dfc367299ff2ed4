#!/bin/sh
# nvidia-ctk merges its runtime entry into the existing config; report whether any file changed.
# Usage: ctk-configure.sh RUNTIME [nvidia-ctk flags...]
set -e
runtime=$1
shift
case $runtime in
  containerd) files="/etc/containerd/config.toml /etc/containerd/conf.d/99-nvidia.toml" ;;
  docker) files=/etc/docker/daemon.json ;;
  *) echo "unsupported runtime $runtime" >&2; exit 2 ;;
esac
sums() { for f in $files; do sha256sum "$f" 2>/dev/null || echo "absent $f"; done; }
before=$(sums)
nvidia-ctk runtime configure --runtime="$runtime" "$@" >/dev/null
after=$(sums)
[ "$before" = "$after" ] && echo unchanged || echo changed
