#!/bin/sh
# apt-hold.sh hold|unhold [--dry-run] PACKAGE...: (un)hold the installed ones not already so, in one call.
# Prints "unchanged" or "changed: <packages>" (what changed, or would with --dry-run).
set -e
action=$1
shift
dry=no
if [ "$1" = --dry-run ]; then dry=yes; shift; fi
held=$(apt-mark showhold)
todo=""
for pkg in "$@"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = installed ] || continue
  if printf '%s\n' "$held" | grep -qx "$pkg"; then is_held=yes; else is_held=no; fi
  if { [ "$action" = hold ] && [ $is_held = no ]; } || { [ "$action" = unhold ] && [ $is_held = yes ]; }; then
    todo="$todo $pkg"
  fi
done
if [ -z "$todo" ]; then echo unchanged; exit 0; fi
# One word per package: $todo is split on purpose.
[ $dry = yes ] || apt-mark "$action" $todo >/dev/null
echo "changed:$todo"
