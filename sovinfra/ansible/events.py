"""Parsing the callback's JSON-lines events and summing them into a per-host recap (pure)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

# What a role says to the operator through a debug message, by its first words (one definition, used by
# the recap, `apply`'s progress and its --json).
NOTICE_KINDS = ("warning", "reboot required", "action needed")


def notice_kind(msg: str) -> str | None:
    lowered = msg.lower()
    return next((kind for kind in NOTICE_KINDS if lowered.startswith(kind)), None)


@dataclass
class HostRecap:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0


@dataclass
class Recap:
    hosts: dict[str, HostRecap] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)
    changes: list[dict[str, str]] = field(default_factory=list)
    notices: list[dict[str, str]] = field(default_factory=list)  # each with its "kind"
    complete: bool = False  # the stats event arrived: the playbook ran to its end

    @property
    def failed_hosts(self) -> list[str]:
        return sorted(h for h, r in self.hosts.items() if r.failed or r.unreachable)

    def as_dict(self) -> dict[str, Any]:
        return {
            "hosts": {h: asdict(r) for h, r in sorted(self.hosts.items())},
            "failed_hosts": self.failed_hosts,
            "failures": self.failures,
            "changes": self.changes,
            "warnings": self.warnings,
            "notices": self.notices,
            "complete": self.complete,
        }


def parse_line(line: str) -> dict[str, Any] | None:
    """One event, or None for a line that is not one of ours (Ansible may print other things)."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        return None
    return event


def apply_event(recap: Recap, event: dict[str, Any]) -> None:
    kind = event["event"]
    if kind == "host_result":
        host, status = str(event.get("host", "?")), event.get("status")
        entry = {"host": host, "task": str(event.get("task", "")), "msg": str(event.get("msg", ""))}
        recap.hosts.setdefault(host, HostRecap())
        if (status == "failed" and not event.get("ignored")) or status == "unreachable":
            recap.failures.append(entry)
        elif status == "changed":
            recap.changes.append(entry)
        debug = event.get("action") in ("debug", "ansible.builtin.debug")
        kind = notice_kind(entry["msg"]) if debug else None
        if kind:
            recap.notices.append({**entry, "kind": kind})
            if kind == "warning":
                recap.warnings.append(entry)
    elif kind == "stats":
        # The final word: Ansible's own counters replace what we tallied from results.
        recap.complete = True
        for host, counts in event.get("hosts", {}).items():
            recap.hosts[host] = HostRecap(
                ok=int(counts.get("ok", 0)),
                changed=int(counts.get("changed", 0)),
                failed=int(counts.get("failures", 0)),
                unreachable=int(counts.get("unreachable", 0)),
                skipped=int(counts.get("skipped", 0)),
                rescued=int(counts.get("rescued", 0)),
                ignored=int(counts.get("ignored", 0)),
            )


def recap_from_lines(lines: list[str]) -> Recap:
    recap = Recap()
    for line in lines:
        event = parse_line(line)
        if event:
            apply_event(recap, event)
    return recap
