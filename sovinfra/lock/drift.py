"""Judging one host's read against the lock (pure): what is missing, extra, at another version, modified."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sovinfra.fleet.state import OPERATOR_FILES, HostState
from sovinfra.inference.plan import snapshot_dir

KINDS = ("missing", "extra", "version", "modified")


@dataclass(frozen=True)
class Item:
    host: str
    kind: str  # one of KINDS
    what: str  # "package libc6", "file /etc/pip.conf", "unit x.service", "model org/m@<commit>", ...
    expected: str
    found: str


def _compare(
    host: str, what: str, expected: dict[str, str], found: dict[str, str], changed: str
) -> list[Item]:
    """Missing and extra keys, and values that differ (reported as `changed`: version or modified)."""
    items = []
    for key in sorted(set(expected) | set(found)):
        want, have = expected.get(key), found.get(key)
        if have is None:
            items.append(Item(host, "missing", f"{what} {key}", str(want), "absent"))
        elif want is None:
            items.append(Item(host, "extra", f"{what} {key}", "absent", have))
        elif want != have:
            items.append(Item(host, changed, f"{what} {key}", want, have))
    return items


def verify_line_path(line: str) -> str:
    """The file of a `dpkg --verify` line ("??5??????   /usr/bin/x", "??5?????? c /etc/x")."""
    return line.split()[-1] if line.split() else ""


def judge(lock: dict[str, Any], host: str, state: HostState, cache_dir: str) -> list[Item]:
    entry = lock["hosts"].get(host)
    if entry is None:
        return [Item(host, "missing", "lock entry", "an entry under hosts", "none: run sovinfra lock")]
    cls = lock["classes"][entry["class"]]
    items = _compare(
        host, "package", {p: e["version"] for p, e in cls["packages"].items()}, state.packages, "version"
    )
    items += [
        Item(host, "modified", f"hold {p}", "held", "released") for p in cls["holds"] if p not in state.holds
    ]
    items += [
        Item(host, "extra", f"hold {p}", "not held", "held") for p in state.holds if p not in cls["holds"]
    ]
    for venv in sorted(set(cls["venvs"]) | set(state.venvs)):
        if venv not in state.venvs:
            items.append(Item(host, "missing", f"venv {venv}", "present", "absent"))
        elif venv not in cls["venvs"]:
            items.append(Item(host, "extra", f"venv {venv}", "absent", "present"))
        else:
            want = {d: e["version"] for d, e in cls["venvs"][venv].items()}
            items += _compare(host, f"venv {venv}:", want, state.venvs[venv], "version")
    items += _compare(host, "file", entry["files"], state.files, "modified")
    items += _compare(host, "unit", entry["units"], state.units, "modified")
    if entry["kernel"] and state.kernel != entry["kernel"]:
        items.append(Item(host, "version", "kernel running", entry["kernel"], state.kernel or "unknown"))
    if entry["machine"] and state.machine != entry["machine"]:
        items.append(Item(host, "modified", "machine", entry["machine"], state.machine or "unknown"))
    if state.gpus != entry["gpus"]:  # another machine, or a GPU swapped: hardware the lock did not see
        items.append(
            Item(host, "modified", "gpus", " ".join(entry["gpus"]) or "none", " ".join(state.gpus) or "none")
        )
    driver = cls["nvidia"].get("driver", {}).get("resolved", "")
    if driver and not driver.startswith(state.driver or "\0"):
        items.append(Item(host, "version", "driver loaded", driver, state.driver or "none"))
    # The roles rewrite these on purpose (their content is judged above), or hand them to the operator.
    managed = set(entry["files"]) | OPERATOR_FILES
    for line in state.modified:
        path = verify_line_path(line)
        if path and path not in managed:
            items.append(Item(host, "modified", f"package file {path}", "as shipped", line.split()[0]))
    for pin in cls["models"]:
        repo, commit = pin.split("@")
        problems = state.models.get(snapshot_dir(cache_dir, repo, commit))
        if problems is None:
            items.append(Item(host, "missing", f"model {pin}", "cached and verified", "absent"))
        for problem in problems or []:
            items.append(Item(host, "modified", f"model {pin}", "as verified", problem))
    return items
