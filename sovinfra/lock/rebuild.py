"""Rebuilding one host from the lock (pure parts): is it the machine the lock knows, and the record kept."""

from __future__ import annotations

from typing import Any

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


def outcome(steps: list[dict[str, Any]]) -> bool:
    return bool(steps) and all(s["exit_code"] == 0 for s in steps)
