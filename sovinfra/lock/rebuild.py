"""Rebuilding one host from the lock (pure parts): is it the machine the lock knows (before its disk is
erased too), and the record kept."""

from __future__ import annotations

from typing import Any

from sovinfra.fleet.connection import HostRead
from sovinfra.fleet.state import HostState


def identity_problems(entry: dict[str, Any], found: HostState) -> list[str]:
    """Why the host answering is not the one the lock recorded (machine board, GPUs once a driver lists
    them); [] when it is, or when nothing comparable can be read yet."""
    problems = []
    if entry["machine"] and found.machine and found.machine != entry["machine"]:
        problems.append(f"machine (DMI product uuid) {found.machine}, the lock recorded {entry['machine']}")
    if entry["gpus"] and found.gpus and sorted(found.gpus) != sorted(entry["gpus"]):
        problems.append(f"GPUs {' '.join(found.gpus)}, the lock recorded {' '.join(entry['gpus'])}")
    return problems


# pyinfra's words when a host answers with a key other than the one known_hosts pins for it.
KEY_MISMATCH = "does not match"


def erase_problems(
    host: str, read: HostRead, entry: dict[str, Any] | None, planted_pinned: bool
) -> list[str]:
    """Why the server about to be erased and installed may not be the one the inventory names: it answers
    ssh with a host key other than the one pinned for it, or (where the lock has it) with another machine
    board or other GPUs. A server that does not answer (blank, dead disk, powered off) or that answers
    with no key pinned yet has nothing to compare: [] (the BMC is then all that names it). Where the pin is
    already the key sovinfra made for the install (planted_pinned: a provision was started and cut short),
    the server may still run its old OS: its other key is expected."""
    if not read.reachable:
        if KEY_MISMATCH in read.error and not planted_pinned:
            return [f"{host} answers ssh with a host key other than the one pinned for it ({read.error})"]
        return []
    return [f"{host}: {p}" for p in identity_problems(entry, read.value)] if entry else []


def outcome(steps: list[dict[str, Any]]) -> bool:
    return bool(steps) and all(s["exit_code"] == 0 for s in steps)
