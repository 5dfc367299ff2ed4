"""Making the lock: the inventory's intent (what it asks for, resolved against the control store) and
what the hosts were found running, grouped into classes of hosts that share their groups.

`intent` needs no host: it is what `sovinfra lock --check` compares. `resolve` adds the host reads.
"""

from __future__ import annotations

import gzip
import re
import subprocess
from pathlib import Path
from typing import Any

from sovinfra import __version__
from sovinfra.errors import UserError
from sovinfra.fleet.state import HostState
from sovinfra.inventory import defaults, model
from sovinfra.lock.schema import FORMAT, LockError
from sovinfra.mirror import apt_plan, apt_snapshots, image_ref, images, wheels
from sovinfra.mirror.store import Store

# NVIDIA components: (the variable that asks for a version, the packages that resolve it).
NVIDIA = {
    "driver": ("nvidia_driver_version", re.compile(r"^(nvidia-driver|cuda-drivers)$")),
    "cuda": ("cuda_toolkit_versions", re.compile(r"^cuda-toolkit-\d+-\d+$")),
    "fabric_manager": (
        "fabric_manager_version",
        re.compile(r"^(nvidia-fabricmanager|cuda-drivers-fabricmanager)(-\d+)?$"),
    ),
    "container_toolkit": ("nvidia_container_toolkit_version", re.compile(r"^nvidia-container-toolkit$")),
}
IGNORED_GROUPS = {"all", "ungrouped"}


def host_class(inv: model.Inventory, host: str) -> str:
    """Hosts in the same groups get the same roles and defaults: one lock entry for all of them."""
    return "+".join(g for g in inv.groups_of(host) if g not in IGNORED_GROUPS) or "ungrouped"


def project_commit(root: Path) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
        )
    except OSError:
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _requested(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "" if value is None or "{{" in str(value) else str(value)


def packages_snapshot(inv: model.Inventory, roles_dir: Path, store: Path) -> str:
    """The snapshot id the hosts are pointed at ("" when they use upstream archives)."""
    wanted = {
        str(defaults.setting(inv, roles_dir, h, "site_apt_snapshot") or "") for h in sorted(inv.hosts)
    } - {""}
    if len(wanted) > 1:
        raise LockError(f"{inv.path}: site_apt_snapshot differs between hosts ({', '.join(sorted(wanted))})")
    snap = wanted.pop() if wanted else ""
    if snap == "current":
        snap = apt_snapshots.current(store) or ""
        if not snap:
            raise LockError(
                f"{store}: no package snapshot yet (site_apt_snapshot: current); run mirror packages sync"
            )
    if snap and not apt_plan.SNAPSHOT_ID.match(snap):
        raise LockError(f"{inv.path}: site_apt_snapshot: {snap!r} is not a snapshot id")
    return snap


def model_pins(inv: model.Inventory, host: str) -> list[tuple[str, str, str]]:
    """(repo, revision, where) of every model the host is asked to hold."""
    hv = model.host_vars(inv, host)
    pins = []
    for key in ("inference_services", "model_cache_models"):
        for entry in hv.get(key) or []:
            if isinstance(entry, dict) and entry.get("repo"):
                where = f"{model.var_file(inv, host, key)}: {key}"
                pins.append((str(entry["repo"]), str(entry.get("revision") or "main"), where))
    return pins


def image_pins(inv: model.Inventory, host: str, held: set[str]) -> list[str]:
    """The images (name@digest) the host's services run, each one the site's store holds."""
    key = "inference_services"
    pins = []
    for n, entry in enumerate(model.host_vars(inv, host).get(key) or []):
        if isinstance(entry, dict) and entry.get("image"):
            where = f"{model.var_file(inv, host, key)}: {key}[{n}].image"
            try:
                ref = image_ref.pinned(str(entry["image"]))
            except ValueError as exc:
                raise LockError(f"{where}: {exc}") from None
            pin = f"{ref.name}@{ref.digest}"
            if pin not in held:
                raise LockError(
                    f"{where}: {pin}: the site's images do not hold it (sovinfra mirror images add)"
                )
            pins.append(pin)
    return pins


def intent(inv: model.Inventory, roles_dir: Path, store: Path) -> dict[str, Any]:
    """What the inventory asks for, resolved against the control store; no host is read."""
    mirror = Store(store)
    held = {i.reference for i in images.records(store)}
    models: dict[str, dict[str, str]] = {}
    classes: dict[str, dict[str, Any]] = {}
    for host in sorted(inv.hosts):
        body = classes.setdefault(
            host_class(inv, host), {"hosts": [], "models": [], "nvidia": {}, "images": []}
        )
        body["hosts"].append(host)
        body["images"] = sorted({*body["images"], *image_pins(inv, host, held)})
        for repo, revision, where in model_pins(inv, host):
            try:
                commit = mirror.resolve(repo, revision)
                files = {f.path: f.sha256 for f in mirror.commit(repo, commit).files}
            except (OSError, ValueError, KeyError, UserError) as exc:
                raise LockError(
                    f"{where}: {repo}@{revision}: the site mirror does not hold it ({exc})"
                ) from None
            pin = f"{repo}@{commit}"
            models[pin] = files
            if pin not in body["models"]:
                body["models"].append(pin)
        if host in inv.hosts_in("gpu_nodes"):
            for part, (key, _) in NVIDIA.items():
                body["nvidia"].setdefault(part, _requested(defaults.setting(inv, roles_dir, host, key)))
    for body in classes.values():
        body["models"].sort()
    return {
        "format": FORMAT,
        "sovinfra": __version__,
        "packages_snapshot": packages_snapshot(inv, roles_dir, store),
        "models": models,
        "classes": classes,
    }


def intent_of(lock: dict[str, Any]) -> dict[str, Any]:
    """The same view of a lock file, to compare with `intent`."""
    return {
        "format": lock["format"],
        "sovinfra": lock["sovinfra"]["version"],
        "packages_snapshot": lock["packages_snapshot"],
        "models": lock["models"],
        "classes": {
            name: {
                "hosts": body["hosts"],
                "models": body["models"],
                "nvidia": {part: entry["requested"] for part, entry in body["nvidia"].items()},
                "images": body["images"],
            }
            for name, body in lock["classes"].items()
        },
    }


def parse_packages_index(text: str) -> dict[tuple[str, str], str]:
    """{(package, version): sha256} from an apt Packages index."""
    found: dict[tuple[str, str], str] = {}
    for stanza in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line.startswith(" ")
        )
        if "Package" in fields and "Version" in fields and "SHA256" in fields:
            found[(fields["Package"], fields["Version"])] = fields["SHA256"]
    return found


def snapshot_debs(store: Path, snapshot: str) -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    if not snapshot:
        return found
    dists = apt_snapshots.published_tree(store) / "dists" / snapshot
    for index in sorted(dists.glob("*/binary-*/Packages.gz")):
        found |= parse_packages_index(gzip.decompress(index.read_bytes()).decode(errors="replace"))
    return found


def wheel_hashes(store: Path) -> dict[tuple[str, str], dict[str, str]]:
    """{(project, version): {wheel file: sha256}}: a wheelhouse holds one file per Python and platform."""
    found: dict[tuple[str, str], dict[str, str]] = {}
    for name, sha in wheels.listing(store).items():
        parts = name.split("-")
        found.setdefault((wheels.normalize(parts[0]), parts[1]), {})[name] = sha
    return found


def wheel_for(files: dict[str, str], python: str, arch: str) -> str:
    """The sha256 of the file a venv of Python `python` ("3.11") on `arch` ("x86_64") installs: a pure one,
    else one built for that CPython (or its stable ABI) on that architecture; "" when none fits."""
    cp = "cp" + python.replace(".", "")
    for name in sorted(files):
        py, abi, platform = name[: -len(".whl")].split("-")[-3:]
        tags = set(py.split("."))
        pure = platform == "any" and bool(tags & {"py3", "py2", f"py{python.split('.')[0]}", cp})
        built = cp in tags and abi in (cp, "abi3", "none") and (not arch or platform.endswith(arch))
        if pure or built or (not python and len(files) == 1):
            return files[name]
    return ""


def _same_everywhere(
    hosts: list[str], values: dict[str, dict[str, str]], what: str, where: str
) -> dict[str, str]:
    """The one mapping every host of a class holds; a difference is drift to settle before locking."""
    first = values[hosts[0]]
    for host in hosts[1:]:
        other = values[host]
        for key in sorted(set(first) | set(other)):
            if first.get(key) != other.get(key):
                raise LockError(
                    f"{where}: {what} {key}: {first.get(key) or 'absent'} on {hosts[0]}, "
                    f"{other.get(key) or 'absent'} on {host}; converge them (or give them their own group) "
                    "before locking"
                )
    return first


def resolve(
    inv: model.Inventory, roles_dir: Path, store: Path, reads: dict[str, HostState], commit: str
) -> dict[str, Any]:
    """The whole lock: intent plus what every host runs (packages, venvs, files, units)."""
    want = intent(inv, roles_dir, store)
    debs = snapshot_debs(store, want["packages_snapshot"])
    hashes = wheel_hashes(store)
    classes: dict[str, Any] = {}
    for name, body in want["classes"].items():
        hosts = body["hosts"]
        packages = _same_everywhere(hosts, {h: reads[h].packages for h in hosts}, "package", name)
        holds = _same_everywhere(
            hosts, {h: dict.fromkeys(reads[h].holds, "held") for h in hosts}, "hold", name
        )
        venv_names = sorted({v for h in hosts for v in reads[h].venvs})
        venvs = {
            v: _same_everywhere(hosts, {h: reads[h].venvs.get(v, {}) for h in hosts}, f"{v}:", name)
            for v in venv_names
        }
        nvidia = {}
        for part, requested in body["nvidia"].items():
            pattern = NVIDIA[part][1]
            nvidia[part] = {
                "requested": requested,
                "resolved": ", ".join(v for p, v in sorted(packages.items()) if pattern.match(p)),
            }
        classes[name] = {
            "hosts": hosts,
            "packages": {p: {"version": v, "sha256": debs.get((p, v), "")} for p, v in packages.items()},
            "holds": sorted(holds),
            "nvidia": nvidia,
            "venvs": {
                v: {
                    d: {
                        "version": ver,
                        "sha256": wheel_for(
                            hashes.get((wheels.normalize(d), ver), {}),
                            reads[hosts[0]].venv_pythons.get(v, ""),
                            reads[hosts[0]].arch,
                        ),
                    }
                    for d, ver in dists.items()
                }
                for v, dists in venvs.items()
            },
            "models": body["models"],
            "images": body["images"],
        }
    return {
        "format": FORMAT,
        "sovinfra": {"version": __version__, "commit": commit},
        "packages_snapshot": want["packages_snapshot"],
        "classes": classes,
        "models": want["models"],
        "hosts": {
            h: {
                "class": host_class(inv, h),
                "files": reads[h].files,
                "units": reads[h].units,
                "kernel": reads[h].kernel,
                "gpus": reads[h].gpus,
                "machine": reads[h].machine,
            }
            for h in sorted(inv.hosts)
        },
    }


def site_store(inv: model.Inventory, roles_dir: Path) -> Path:
    """The control store the roles ship from (site_store)."""
    return Path(str(defaults.setting(inv, roles_dir, sorted(inv.hosts)[0], "site_store")))


def node_paths(inv: model.Inventory, roles_dir: Path) -> tuple[str, str]:
    """(the agent venv, the model cache) on the site's nodes: what drift reads and re-hashes with."""
    first = sorted(inv.hosts)[0]
    venv = defaults.setting(inv, roles_dir, first, "sovinfra_venv_path")
    cache = defaults.setting(inv, roles_dir, first, "model_cache_dir")
    return str(venv), str(cache)
