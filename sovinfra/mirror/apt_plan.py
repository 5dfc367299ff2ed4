"""What a site package snapshot holds and where it comes from (pure: no aptly, no network).

The need is read from the roles and the inventory: every list a role keeps under a name ending in
`_os_packages` (its `vars/` or `defaults/`), `base_packages` + `base_extra_packages` and
`model_mirror_apt_packages` of every host, the container runtime packages of the engines hosts use,
and everything of priority `required` (what any Debian base system holds). NVIDIA's packages are needed
at the exact versions the GPU nodes pin (`nvidia_need`).
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from debian.debian_support import Version

from sovinfra.errors import UserError
from sovinfra.inventory import defaults, model

SNAPSHOT_ID = re.compile(r"^\d{8}T\d{6}Z$")
UPSTREAM_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
FINGERPRINT = re.compile(r"^[0-9A-F]{40}$")
CUDA_VERSION = re.compile(r"^(\d+)\.(\d+)\.\d+$")
UPSTREAMS_KEY = "model_mirror_apt_upstreams"
UPSTREAM_KEYS = ("name", "url", "distributions", "components", "keyring", "key_fingerprints")


@dataclass(frozen=True)
class Upstream:
    """One upstream apt repository, signed by keys the inventory pins by fingerprint."""

    name: str
    url: str
    distributions: tuple[str, ...]
    components: tuple[str, ...]
    keyring: str  # a keyring or key file on the control node, or an http(s) URL of the key
    key_fingerprints: tuple[str, ...]
    flat: bool = False  # NVIDIA's layout: Release and Packages in the URL's directory, no dists/

    def mirror_names(self) -> list[tuple[str, str]]:
        """(aptly mirror name, distribution) for each distribution; a flat repository's is `./`."""
        if self.flat:
            return [(self.name, "./")]
        return [(f"{self.name}-{dist}", dist) for dist in self.distributions]

    def aptly_source(self, dist: str) -> list[str]:
        """aptly's `<archive url> <distribution> [components]` for one distribution."""
        if self.flat:
            return [self.url + "/", dist]
        return [self.url, dist, *self.components]


@dataclass(frozen=True)
class Requirement:
    """A package needed at a version the inventory pins (NVIDIA's revision suffix, `-1`, left open)."""

    name: str
    version: str
    why: str  # the setting that asks for it: "gpu1: nvidia_driver_version"

    def query(self) -> str:
        return f"({self.name}, $Version (% {self.version}-*))"

    def met_by(self, keys: set[str]) -> bool:
        """True when a snapshot key `name_version_arch` carries it."""
        return any(fnmatch.fnmatchcase(k, f"{self.name}_{self.version}-*_*") for k in keys)


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
        unknown = sorted(set(entry) - {*UPSTREAM_KEYS, "flat"})
        if unknown:
            raise UserError(f"{at}.{unknown[0]}: unknown key")
        flat = entry.get("flat", False)
        if not isinstance(flat, bool):
            raise UserError(f"{at}.flat: must be true or false")
        if flat and ("distributions" in entry or "components" in entry):
            key = "distributions" if "distributions" in entry else "components"
            raise UserError(f"{at}.{key}: a flat repository has none (its URL is the directory of Release)")
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
                distributions=("./",)
                if flat
                else _strings(entry.get("distributions"), f"{at}.distributions"),
                components=() if flat else _strings(entry.get("components", ["main"]), f"{at}.components"),
                keyring=entry["keyring"],
                key_fingerprints=fingerprints,
                flat=flat,
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


# Inventory variables that name packages the snapshot holds (OS packages, the site's own), and the role
# whose default applies when a host sets none.
HOST_PACKAGE_VARS = {
    "base_packages": "base",
    "base_extra_packages": "base",
    "model_mirror_apt_packages": "model_mirror",
    "dcgm_bandwidth_tools": "dcgm",
}


def serves_installer(inv: model.Inventory) -> bool:
    """Servers network-install the site's OS image from this site (the inventory has netboot hosts)."""
    return bool(inv.hosts_in("netboot"))


def installer_packages(roles_dir: Path) -> set[str]:
    """The netboot host's packages and the OS image's, made from the snapshot (roles/netboot/vars)."""
    netboot = defaults.role_vars(roles_dir, "netboot")
    keys = ("__netboot_server_packages", "__netboot_image_packages")
    return {str(name) for key in keys for name in netboot.get(key) or []}


def needed_packages(inv: model.Inventory, roles_dir: Path) -> list[str]:
    """Every package name the site's hosts install from the OS archive (dependencies are aptly's job)."""
    names = _role_lists(roles_dir)
    if serves_installer(inv):
        names |= installer_packages(roles_dir)
    runtimes = defaults.role_vars(roles_dir, "container_runtime", "Debian")
    engine_packages = runtimes.get("__container_runtime_packages", {})
    for host in sorted(inv.hosts):
        hv = model.host_vars(inv, host)
        for key, role in HOST_PACKAGE_VARS.items():
            value = hv.get(key, defaults.role_defaults(roles_dir, role).get(key))
            if isinstance(value, list):
                names |= {v for v in value if isinstance(v, str) and "{{" not in v}
        if host in inv.hosts_in("gpu_nodes"):
            engine = defaults.setting(inv, roles_dir, host, "container_runtime_engine")
            names |= set(engine_packages.get(engine, []))
            # DKMS builds against the running kernel's headers; a kernel the inventory names is known now
            # (the default, the host's fact, is only known on the host: its headers come from
            # `model_mirror_apt_packages`).
            kernel = defaults.setting(inv, roles_dir, host, "nvidia_driver_kernel_release")
            source = defaults.setting(inv, roles_dir, host, "nvidia_driver_module_source")
            if source == "dkms" and isinstance(kernel, str) and kernel and "{{" not in kernel:
                names.add(f"linux-headers-{kernel}")
    bad = sorted(n for n in names if not PACKAGE_NAME.match(n))
    if bad:
        raise UserError(f"package name {bad[0]!r} is not a Debian package name")
    return sorted(names)


def _pinned(inv: model.Inventory, roles_dir: Path, host: str, key: str) -> str:
    value = defaults.setting(inv, roles_dir, host, key)
    if not isinstance(value, str | int | float) or not str(value) or "{{" in str(value):
        raise UserError(
            f"{model.var_file(inv, host, key)}: {key} of {host} must be a version "
            f"(the package snapshot holds exact versions), got {value!r}"
        )
    return str(value)


def nvidia_need(inv: model.Inventory, roles_dir: Path) -> list[Requirement]:
    """NVIDIA's packages at the versions each GPU node pins, named as the NVIDIA roles install them
    (their vars are the one list of names); dependencies are resolved by the sync."""
    driver_names = defaults.role_vars(roles_dir, "nvidia_driver", "Debian").get(
        "__nvidia_driver_packages", {}
    )
    toolkit_names = defaults.role_vars(roles_dir, "nvidia_container_toolkit").get(
        "__nvidia_container_toolkit_packages", []
    )
    dcgm_names = defaults.role_vars(roles_dir, "dcgm")
    need: dict[tuple[str, str], Requirement] = {}

    def add(name: str, version: str, host: str, key: str) -> None:
        need.setdefault((name, version), Requirement(name, version, f"{host}: {key}"))

    for host in sorted(inv.hosts_in("gpu_nodes")):
        setting = functools.partial(defaults.setting, inv, roles_dir, host)
        driver = _pinned(inv, roles_dir, host, "nvidia_driver_version")
        modules = setting("nvidia_driver_kernel_modules")
        if modules not in driver_names:
            raise UserError(
                f"{model.var_file(inv, host, 'nvidia_driver_kernel_modules')}: nvidia_driver_kernel_modules "
                f"of {host} must be one of {', '.join(sorted(driver_names))}, got {modules!r}"
            )
        for name in driver_names[modules]:
            add(name, driver, host, "nvidia_driver_version")
        cuda = setting("cuda_toolkit_versions")
        for version in cuda if isinstance(cuda, list) else [cuda]:
            parts = CUDA_VERSION.match(str(version))
            if not parts:
                where = model.var_file(inv, host, "cuda_toolkit_versions")
                raise UserError(f"{where}: cuda_toolkit_versions of {host}: {version!r} is not X.Y.Z")
            add(f"cuda-toolkit-{parts[1]}-{parts[2]}", str(version), host, "cuda_toolkit_versions")
        if str(setting("fabric_manager_enabled")).lower() not in ("false", "no", "0"):
            # `auto` installs it where NVSwitches are found: the snapshot holds it for any GPU node.
            fabric = _pinned(inv, roles_dir, host, "fabric_manager_version")
            branch = setting("nvidia_driver_branch")
            branch = str(branch) if branch and "{{" not in str(branch) else fabric.split(".")[0]
            if not branch.isdigit():
                where = model.var_file(inv, host, "nvidia_driver_branch")
                raise UserError(f"{where}: nvidia_driver_branch of {host}: {branch!r} is not a branch number")
            # NVIDIA's names (fabric_manager's install task): branch-suffixed below 580.
            name = f"nvidia-fabricmanager-{branch}" if int(branch) < 580 else "nvidia-fabricmanager"
            add(name, fabric, host, "fabric_manager_version")
        if str(setting("dcgm_enabled")).lower() not in ("false", "no", "0"):
            # NVIDIA publishes DCGM with epoch 1; every CUDA major's diagnostics package (the role picks
            # the one its driver supports).
            dcgm = f"1:{_pinned(inv, roles_dir, host, 'dcgm_version')}"
            for name in [
                dcgm_names["__dcgm_core"],
                *(dcgm_names["__dcgm_cuda_prefix"] + m for m in dcgm_names["__dcgm_cuda_majors"]),
            ]:
                add(name, dcgm, host, "dcgm_version")
        toolkit = _pinned(inv, roles_dir, host, "nvidia_container_toolkit_version")
        for name in toolkit_names:
            add(name, toolkit, host, "nvidia_container_toolkit_version")
    return sorted(need.values(), key=lambda r: (r.name, r.version))


def installed_need(installed: dict[str, dict[str, Any]], versioned: list[Requirement]) -> list[str]:
    """What the hosts have installed ({host: {package: versions}}, as pyinfra's DebPackages reads it), so a
    host rebuilt from the snapshot can have all of it back; names pinned at a version are left to their
    pins (a name alone would take every version NVIDIA publishes)."""
    pinned = {r.name for r in versioned}
    names = {name.split(":")[0] for packages in installed.values() for name in packages} - pinned
    return sorted(n for n in names if PACKAGE_NAME.match(n))


BARE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


def provided_names(provides_lines: str) -> set[str]:
    """The names in Provides fields, one field per line ("netavark" gives "container-network-stack (= 2)")."""
    return {
        e.strip().split(" ")[0] for line in provides_lines.splitlines() for e in line.split(",") if e.strip()
    }


def _or_providers(dependency: str) -> str:
    """A bare dependency may be a virtual package (`container-network-stack`, which podman's stack needs):
    aptly's name query matches package names only, so the packages whose Provides field names it are
    asked for too. A pattern, because aptly's query language cannot match one entry of that list: a
    package providing a longer name that contains this one may come along (harmless, rare)."""
    if not BARE_NAME.match(dependency):
        return dependency
    return f"{dependency} | Provides (% *{dependency}*)"


def filter_query(
    packages: list[str],
    versioned: Sequence[Requirement] = (),
    more: Sequence[str] = (),
) -> str:
    """aptly's filter for the site's need: the named packages, the pinned versions, the base system
    (`Priority (required)`), and `more` (dependencies another upstream's packages have on this one, or
    that a flat upstream's packages have on each other; a bare name also by what provides it)."""
    return " | ".join(
        [
            "Priority (required)",
            *packages,
            *(r.query() for r in versioned),
            *map(_or_providers, more),
        ]
    )


def missing_packages(needed: list[str], present: set[str]) -> list[str]:
    """Needed names the merged snapshot lacks (an upstream that dropped or never had them)."""
    return [n for n in needed if n not in present]


def parse_unmet(verify_output: str) -> list[str]:
    """The dependencies `aptly snapshot verify` reports missing, as aptly queries (architecture dropped)."""
    _, found, rest = verify_output.partition("Missing dependencies")
    if not found:
        return []
    lines = rest.splitlines()[1:]
    return sorted({re.sub(r"\s*\[[^]]*\]$", "", line.strip()) for line in lines if line.strip()})


_RELATION = re.compile(r"^([a-z0-9][a-z0-9+.-]+)(?::\S+)?(?:\s*\((<<|<=|=|>=|>>)\s*([^)\s]+)\s*\))?")
_HOLDS = {
    "<<": lambda c: c < 0, "<=": lambda c: c <= 0, "=": lambda c: c == 0, ">=": lambda c: c >= 0,
    ">>": lambda c: c > 0,
}  # fmt: skip


@dataclass(frozen=True)
class Stanza:
    """One package version of a snapshot, as far as apt's choice of versions goes."""

    name: str
    version: str
    depends: str = ""  # Depends and Pre-Depends, as the control file writes them
    source: str = ""  # its Source field ("" where the source is named as the package)

    @property
    def source_name(self) -> str:
        return self.source.split(" ", 1)[0] if self.source else self.name


def _met_by_newest(name: str, relation: str, version: str, newest: dict[str, Version]) -> bool | None:
    """Whether the newest version of `name` meets the relation; None where the package is not in the
    snapshot (virtual, or missing: aptly's own check names what is missing)."""
    if name not in newest:
        return None
    if not relation:
        return True
    have, want = newest[name], Version(version)
    return _HOLDS[relation]((have > want) - (have < want))


def held_back(stanzas: Sequence[Stanza]) -> list[str]:
    """What to mirror from every upstream, as aptly queries, so that apt can install the snapshot's newest
    versions together (pure). apt installs only a package's newest version; a merged snapshot can hold a
    package updated by one upstream (perl-base from a security suite) beside a sibling of the same source
    only at the release's version (perl, whose Depends pins perl-base (= the older version)): aptly's
    check is met by the older version the merge keeps, but apt would hold the update back, or fail to
    install perl at all. For each dependency of a newest version that no newest version meets: the
    dependency itself, and every binary package of the depended-on source at the version the side that
    moved on has (siblings update together), each by exact version so that no other version comes along."""
    newest: dict[str, Version] = {}
    by_source: dict[str, set[str]] = {}
    source_of: dict[str, str] = {}
    for st in stanzas:
        parsed = Version(st.version)
        if st.name not in newest or parsed > newest[st.name]:
            newest[st.name] = parsed
        by_source.setdefault(st.source_name, set()).add(st.name)
        source_of[st.name] = st.source_name
    out: set[str] = set()
    for st in stanzas:
        if Version(st.version) != newest[st.name]:
            continue
        for dependency in filter(None, (d.strip() for d in st.depends.split(","))):
            terms = [m.groups("") for a in dependency.split("|") if (m := _RELATION.match(a.strip()))]
            met = [_met_by_newest(name, relation, wanted, newest) for name, relation, wanted in terms]
            if not met or any(m is not False for m in met):
                continue  # met, or names a package the snapshot lacks (aptly's check reports those)
            out.add(dependency)
            for name, relation, wanted in terms:
                # The side that moved on sets the version its source's packages must all have: the
                # dependency's package where it is ahead (its siblings, the depender among them, follow it),
                # else the version an exact dependency asks for.
                ahead = newest[name] > Version(wanted)
                if ahead or relation == "=":
                    at = str(newest[name]) if ahead else wanted
                    out |= {f"{sibling} (= {at})" for sibling in by_source[source_of[name]]}
    return sorted(out)


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


def debian_releases(upstreams: Sequence[Upstream]) -> list[str]:
    """The releases a snapshot's archives are for: each distribution's codename (bookworm-updates and
    bookworm-security are bookworm's); flat repositories name none."""
    return sorted({dist.split("-")[0] for u in upstreams if not u.flat for dist in u.distributions})


def site_upstreams(inv: model.Inventory, roles_dir: Path) -> tuple[list[Upstream], list[str]]:
    """The upstream repositories and architectures the site snapshot is made from."""
    value, where = _mirror_setting(inv, roles_dir, UPSTREAMS_KEY)
    upstreams = parse_upstreams(value, where)
    arches, where = _mirror_setting(inv, roles_dir, "model_mirror_apt_architectures")
    return upstreams, list(_strings(arches, f"{where}: model_mirror_apt_architectures"))
