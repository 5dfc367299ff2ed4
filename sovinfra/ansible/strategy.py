"""Which Ansible strategy a run uses: Mitogen's where the installed ansible-core is one we run it on.

Mitogen keeps one Python interpreter per host for the whole play instead of starting one per task,
which is most of a no-op converge's cost. It replaces Ansible's connection internals, so it is used
only on the ansible-core releases below; anything else runs Ansible's own `linear` strategy and says
why.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

CHOICES = ("mitogen", "linear")
DEFAULT = "mitogen"
# ansible-core (major, minor) releases the pinned Mitogen supports; the lab suite has run on 2.19.
# Widen only after the suite passes on the new release.
MITOGEN_SUPPORTED = ((2, 16), (2, 19))


@dataclass(frozen=True)
class Strategy:
    name: str  # the value of ANSIBLE_STRATEGY
    plugin_dir: Path | None  # ANSIBLE_STRATEGY_PLUGINS, for Mitogen's
    notice: str | None = None  # why the requested strategy is not the one used


def parse_version(text: str) -> tuple[int, int]:
    parts = text.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return (0, 0)


def choose(requested: str, ansible_version: tuple[int, int], mitogen_dir: Path | None) -> Strategy:
    """The strategy for a run: pure, so every fallback is decided (and tested) without Ansible."""
    if requested == "linear":
        return Strategy("linear", None)
    if requested != "mitogen":
        raise ValueError(f"unknown strategy {requested!r} (choose from {', '.join(CHOICES)})")
    if mitogen_dir is None:
        return Strategy("linear", None, "Mitogen is not installed (pip install sovinfra's dependencies)")
    low, high = MITOGEN_SUPPORTED
    if not low <= ansible_version <= high:
        found = ".".join(map(str, ansible_version))
        supported = f"{low[0]}.{low[1]}-{high[0]}.{high[1]}"
        return Strategy("linear", None, f"ansible-core {found} is not one Mitogen is used with ({supported})")
    return Strategy("mitogen_linear", mitogen_dir / "plugins" / "strategy")


def installed_mitogen() -> Path | None:
    spec = importlib.util.find_spec("ansible_mitogen")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def installed_ansible() -> tuple[int, int]:
    from ansible.release import __version__

    return parse_version(__version__)


def for_run(requested: str = DEFAULT) -> Strategy:
    return choose(requested, installed_ansible(), installed_mitogen())
