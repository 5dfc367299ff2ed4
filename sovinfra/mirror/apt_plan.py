"""What a site package snapshot holds and where it comes from (pure: no aptly, no network).

The need is read from the roles and the inventory: every list a role keeps under a name ending in
`_os_packages` (its `vars/` or `defaults/`), `base_packages` + `base_extra_packages` and
`model_mirror_apt_packages` of every host, the container runtime packages of the engines hosts use,
and everything of priority `required` (what any Debian base system holds).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sovinfra.errors import UserError
from sovinfra.inventory import defaults, model

SNAPSHOT_ID = re.compile(r"^\d{8}T\d{6}Z$")
UPSTREAM_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
FINGERPRINT = re.compile(r"^[0-9A-F]{40}$")
UPSTREAMS_KEY = "model_mirror_apt_upstreams"


@dataclass(frozen=True)
class Upstream:
    """One upstream apt repository, signed by keys the inventory pins by fingerprint."""

    name: str
    url: str
    distributions: tuple[str, ...]
    components: tuple[str, ...]
    keyring: str
    key_fingerprints: tuple[str, ...]

    def mirror_names(self) -> list[tuple[str, str]]:
        """(aptly mirror name, distribution) for each distribution."""
        return [(f"{self.name}-{dist}", dist) for dist in self.distributions]


def snapshot_id(now: datetime | None = None) -> str:
    """A site snapshot id: the UTC time of the sync, to the second (sorts by age)."""
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _strings(value: Any, where: str, *, pattern: re.Pattern[str] | None = None) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise UserError(f"{where}: must be a non-empty list of strings")
    if pattern is not None:
        bad = [v for v in value if not pattern.match(v)]
        if bad:
            raise UserError(f"{where}: {bad[0]!r} is not valid")
    return tuple(value)


def parse_upstreams(value: Any, where: str) -> list[Upstream]:
    """`model_mirror_apt_upstreams` as declared; every error names the entry and key."""
    if not isinstance(value, list) or not value:
        raise UserError(f"{where}: {UPSTREAMS_KEY} must be a non-empty list")
    result: list[Upstream] = []
    for i, entry in enumerate(value):
        at = f"{where}: {UPSTREAMS_KEY}[{i}]"
        if not isinstance(entry, dict):
            raise UserError(f"{at}: must be a mapping")
        unknown = sorted(
            set(entry) - {"name", "url", "distributions", "components", "keyring", "key_fingerprints"}
        )
        if unknown:
            raise UserError(f"{at}.{unknown[0]}: unknown key")
        for key in ("name", "url", "keyring"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise UserError(f"{at}.{key}: required (a string)")
        if not UPSTREAM_NAME.match(entry["name"]):
            raise UserError(f"{at}.name: {entry['name']!r} must be lower-case letters, digits and dashes")
        if not re.match(r"^https?://", entry["url"]):
            raise UserError(f"{at}.url: {entry['url']!r} must be an http(s) URL")
        fingerprints = tuple(
            f.replace(" ", "").upper()
            for f in _strings(entry.get("key_fingerprints"), f"{at}.key_fingerprints")
        )
        bad = [f for f in fingerprints if not FINGERPRINT.match(f)]
        if bad:
            raise UserError(f"{at}.key_fingerprints: {bad[0]!r} is not a 40-hex fingerprint")
        result.append(
            Upstream(
                name=entry["name"],
                url=entry["url"].rstrip("/"),
                distributions=_strings(entry.get("distributions"), f"{at}.distributions"),
                components=_strings(entry.get("components", ["main"]), f"{at}.components"),
                keyring=entry["keyring"],
                key_fingerprints=fingerprints,
            )
        )
    names = [u.name for u in result]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise UserError(f"{where}: {UPSTREAMS_KEY}: name {dup!r} is used twice")
    return result


def _role_lists(roles_dir: Path) -> set[str]:
    """Packages roles install from the OS archive: their `*_os_packages` lists."""
    found: set[str] = set()
    for path in sorted(roles_dir.glob("*/vars/*.yml")) + sorted(roles_dir.glob("*/defaults/main.yml")):
        data = model.read_yaml(path) or {}
        for key, value in data.items():
            if str(key).endswith("_os_packages") and isinstance(value, list):
                found |= {v for v in value if isinstance(v, str) and "{{" not in v}
    return found


# Inventory variables that name OS packages, and the role whose default applies when a host sets none.
HOST_PACKAGE_VARS = {
    "base_packages": "base",
    "base_extra_packages": "base",
    "model_mirror_apt_packages": "model_mirror",
}


def needed_packages(inv: model.Inventory, roles_dir: Path) -> list[str]:
    """Every package name the site's hosts install from the OS archive (dependencies are aptly's job)."""
    names = _role_lists(roles_dir)
    runtimes = model.read_yaml(roles_dir / "container_runtime" / "vars" / "Debian.yml") or {}
    engine_packages = runtimes.get("__container_runtime_packages", {})
    default_engine = defaults.role_defaults(roles_dir, "container_runtime").get("container_runtime_engine")
    for host in sorted(inv.hosts):
        hv = model.host_vars(inv, host)
        for key, role in HOST_PACKAGE_VARS.items():
            value = hv.get(key, defaults.role_defaults(roles_dir, role).get(key))
            if isinstance(value, list):
                names |= {v for v in value if isinstance(v, str) and "{{" not in v}
        if host in inv.hosts_in("gpu_nodes"):
            names |= set(engine_packages.get(hv.get("container_runtime_engine", default_engine), []))
    bad = sorted(n for n in names if not PACKAGE_NAME.match(n))
    if bad:
        raise UserError(f"package name {bad[0]!r} is not a Debian package name")
    return sorted(names)


def filter_query(packages: list[str]) -> str:
    """aptly's filter for the site's need: the named packages and the base system (`Priority (required)`)."""
    return " | ".join(["Priority (required)", *packages])


def missing_packages(needed: list[str], present: set[str]) -> list[str]:
    """Needed names the merged snapshot lacks (an upstream that dropped or never had them)."""
    return [n for n in needed if n not in present]


def prune_plan(published: list[str], current: str | None, keep: int) -> list[str]:
    """Snapshot ids to drop: all but the newest `keep`, never the current one."""
    newest_first = sorted(published, reverse=True)
    return sorted(i for i in newest_first[keep:] if i != current)


def _mirror_setting(inv: model.Inventory, roles_dir: Path, key: str) -> tuple[Any, str]:
    """A model_mirror setting as the first mirror host sees it, and where it was set."""
    mirrors = sorted(inv.hosts_in("model_mirror"))
    if mirrors and key in model.host_vars(inv, mirrors[0]):
        return model.host_vars(inv, mirrors[0])[key], str(model.var_file(inv, mirrors[0], key))
    return defaults.role_defaults(roles_dir, "model_mirror").get(key), str(
        roles_dir / "model_mirror" / "defaults" / "main.yml"
    )


def site_upstreams(inv: model.Inventory, roles_dir: Path) -> tuple[list[Upstream], list[str]]:
    """The upstream repositories and architectures the site snapshot is made from."""
    value, where = _mirror_setting(inv, roles_dir, UPSTREAMS_KEY)
    upstreams = parse_upstreams(value, where)
    arches, where = _mirror_setting(inv, roles_dir, "model_mirror_apt_architectures")
    return upstreams, list(_strings(arches, f"{where}: model_mirror_apt_architectures"))
