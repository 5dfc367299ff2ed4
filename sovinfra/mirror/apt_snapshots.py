"""Frozen, signed package snapshots with aptly, on the connected side (the control node).

Layout under the store root:
  packages/aptly.conf            aptly's configuration (rootDir below)
  packages/aptly/                aptly's database and package pool
  packages/aptly/public/site/    the published tree: dists/<snapshot id>/ + a shared pool/ (what the
                                 mirror host serves at /packages/site)
  packages/keyrings/<name>.gpg   each upstream's pinned keys, and only those
  packages/snapshots/<id>.json   what each published snapshot holds; written after its publish
  packages/current               the newest complete snapshot id; written last, atomically
A snapshot id is a new distribution under one prefix: a sync never rewrites a published one, and a
sync that stops anywhere leaves `current` (and what clients use) as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sovinfra import atomic
from sovinfra.errors import UserError
from sovinfra.mirror import apt_plan, sitekey

PREFIX = "site"
COMPONENT = "main"


@dataclass
class SnapshotInfo:
    id: str
    packages: int
    bytes: int
    upstreams: list[str]
    current: bool = False


def packages_dir(store: Path) -> Path:
    return store / "packages"


def published_tree(store: Path) -> Path:
    return packages_dir(store) / "aptly" / "public" / PREFIX


def current(store: Path) -> str | None:
    path = packages_dir(store) / "current"
    return path.read_text().strip() or None if path.exists() else None


def _config(store: Path, architectures: list[str]) -> Path:
    conf = packages_dir(store) / "aptly.conf"
    text = json.dumps(
        {
            "rootDir": str(packages_dir(store) / "aptly"),
            # GnuPG itself: aptly's built-in verifier lacks ed25519 (Debian's bookworm keys sign with RSA,
            # the site key is ed25519).
            "gpgProvider": "gpg",
            "architectures": architectures,
            "downloadConcurrency": 16,
            "dependencyFollowSuggests": False,
            "dependencyFollowRecommends": False,
            "dependencyFollowAllVariants": False,
        },
        indent=2,
    )
    if not conf.exists() or conf.read_text() != text:
        atomic.write_text(conf, text)
    return conf


def _gpgv_shim(store: Path) -> Path:
    """A `gpgv` first on aptly's PATH that judges signatures as apt does (see gpgv_apt)."""
    bindir = packages_dir(store) / "bin"
    shim = bindir / "gpgv"
    text = f'#!/bin/sh\nexec {sys.executable} -m sovinfra.mirror.gpgv_apt "$@"\n'
    if not shim.exists() or shim.read_text() != text:
        bindir.mkdir(parents=True, exist_ok=True)
        atomic.write_text(shim, text)
        shim.chmod(0o755)
    return bindir


class Aptly:
    def __init__(self, store: Path, architectures: list[str] | None = None) -> None:
        """With architectures: (re)write the configuration; without: use the one the last sync wrote."""
        self.store = store
        self.conf = _config(store, architectures) if architectures else packages_dir(store) / "aptly.conf"
        if not self.conf.exists():
            raise UserError(
                f"{packages_dir(store)}: no package snapshots here (sovinfra mirror packages sync)"
            )
        self.env = {
            **os.environ,
            "GNUPGHOME": str(sitekey.homedir(store)),
            "PATH": f"{_gpgv_shim(store)}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    def __call__(self, *args: str, what: str) -> str:
        try:
            proc = subprocess.run(
                ["aptly", f"-config={self.conf}", *args],
                capture_output=True,
                text=True,
                env=self.env,
                check=False,
            )
        except FileNotFoundError as exc:
            raise UserError("aptly is not installed (apt-get install aptly)") from exc
        if proc.returncode != 0:
            detail = (proc.stderr.strip() or proc.stdout.strip())[-800:]
            raise UserError(f"{what}: aptly {args[0]} {args[1] if len(args) > 1 else ''} failed: {detail}")
        return proc.stdout

    def names(self, kind: str) -> set[str]:
        return set(self(kind, "list", "-raw", what=f"listing {kind}s").split())


def _key_material(upstream: apt_plan.Upstream) -> bytes:
    """The upstream's declared keyring or key file, or the key fetched from its URL (trusted only for the
    fingerprints pinned, which are all that is taken from it)."""
    where = f"upstream {upstream.name}: keyring {upstream.keyring}"
    if re.match(r"^https?://", upstream.keyring):
        try:
            with urllib.request.urlopen(upstream.keyring, timeout=60) as reply:
                return bytes(reply.read())
        except (OSError, ValueError) as exc:
            raise UserError(f"{where}: cannot fetch it ({exc})") from None
    source = Path(upstream.keyring)
    if not source.is_file():
        raise UserError(f"{where} does not exist")
    return source.read_bytes()


def pinned_keyring(store: Path, upstream: apt_plan.Upstream) -> Path:
    """A keyring holding exactly the upstream's pinned keys, taken from its declared keyring or key."""
    material = _key_material(upstream)
    out = packages_dir(store) / "keyrings" / f"{upstream.name}.gpg"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as home:  # a throwaway GnuPG home: nobody's keys but these
        gpg = ["gpg", "--batch", "--homedir", home]
        # Imported, not read as a keyring: a binary keyring and an armored key file both load this way.
        subprocess.run([*gpg, "--import"], input=material, capture_output=True, check=False)
        exported = subprocess.run(
            [*gpg, "--export", *upstream.key_fingerprints], capture_output=True, check=False
        ).stdout
        shown = subprocess.run(
            [*gpg, "--with-colons", "--show-keys"], input=exported, capture_output=True, check=False
        ).stdout.decode()
        sitekey.stop_agent(Path(home))
    have = {line.split(":")[9] for line in shown.splitlines() if line.startswith("fpr:")}
    missing = [f for f in upstream.key_fingerprints if f not in have]
    if missing:
        raise UserError(
            f"upstream {upstream.name}: pinned key {missing[0]} ({apt_plan.UPSTREAMS_KEY} key_fingerprints) "
            f"is not in {upstream.keyring}"
        )
    if not out.exists() or out.read_bytes() != exported:
        out.write_bytes(exported)
    return out


def site_name(snap_id: str) -> str:
    """aptly's name of the merged site snapshot published as `snap_id`."""
    return f"{PREFIX}-{snap_id}"


def packages_of(aptly: Aptly, snapshot: str) -> list[str]:
    """`name_version_arch` keys of a snapshot."""
    text = aptly("snapshot", "show", "-with-packages", snapshot, what=f"reading snapshot {snapshot}")
    rows = text.split("Packages:", 1)[1].splitlines() if "Packages:" in text else []
    return [r.strip() for r in rows if r.strip()]


def _pool_bytes(store: Path, keys: list[str]) -> int:
    wanted = {k + ".deb" for k in keys}
    pool = published_tree(store) / "pool"
    return sum(p.stat().st_size for p in pool.rglob("*.deb") if p.name in wanted) if pool.is_dir() else 0


# Rounds of dependency closure: aptly resolves dependencies only inside one mirror, and not at all in a
# flat one (aptly < 1.6 leaves a flat mirror without architectures), so what the merged snapshot still
# lacks is added to every mirror's filter until nothing is missing (a round per level aptly left open).
MAX_ROUNDS = 8


def _update_mirrors(
    aptly: Aptly,
    keyrings: dict[str, Path],
    upstreams: list[apt_plan.Upstream],
    query: str,
    architectures: list[str],
    log: Any,
) -> None:
    mirrors = aptly.names("mirror")
    for upstream in upstreams:
        keyring = keyrings[upstream.name]
        for name, dist in upstream.mirror_names():
            what = f"upstream {upstream.name} ({upstream.url} {dist})"
            common = [f"-keyring={keyring}", f"-filter={query}", "-filter-with-deps"]
            if not upstream.flat:  # no installer components (udebs): a mirror made with them drops them
                common.append("-with-udebs=false")
            if name in mirrors:
                aptly("mirror", "edit", *common, name, what=what)
            else:
                # -force-components: Debian's security suite lists its components as updates/main but
                # serves them as main/; every index is still checked against the signed Release.
                aptly(
                    "mirror",
                    "create",
                    f"-architectures={','.join(architectures)}",
                    "-force-components",
                    *common,
                    name,
                    *upstream.aptly_source(dist),
                    what=what,
                )
            log(f"updating {name} ...")
            aptly("mirror", "update", f"-keyring={keyring}", name, what=what)


def _snapshot_round(aptly: Aptly, upstreams: list[apt_plan.Upstream], snap_id: str) -> list[str]:
    """Snapshot every mirror and merge them into `site-<id>`; returns what it made, the merge last."""
    made: list[str] = []
    for upstream in upstreams:
        for name, _ in upstream.mirror_names():
            aptly("snapshot", "create", f"{name}-{snap_id}", "from", "mirror", name, what=f"upstream {name}")
            made.append(f"{name}-{snap_id}")
    site = site_name(snap_id)
    # -no-remove: two GPU nodes may pin two driver versions (a rolling upgrade); both stay. And a suite's
    # packages can depend on the exact version of another suite that a newer one supersedes (tried:
    # newest-wins merging of Debian's suites leaves `perl-base (= 5.36.0-7+deb12u3)` unmet).
    aptly("snapshot", "merge", "-no-remove", site, *made, what="merging the site snapshot")
    return [*made, site]


def _unmet(aptly: Aptly, snapshot: str) -> list[str]:
    """Dependencies the snapshot does not meet. aptly 1.5's verify ignores versioned Provides, the way
    Debian's netavark provides `container-network-stack (= 2)`: a bare name some package provides is met."""
    unmet = apt_plan.parse_unmet(aptly("snapshot", "verify", snapshot, what=f"verifying {snapshot}"))
    return [d for d in unmet if not (apt_plan.BARE_NAME.match(d) and _provided(aptly, snapshot, d))]


def _stanzas(aptly: Aptly, snapshot: str) -> list[apt_plan.Stanza]:
    """Every package version of a snapshot with what it depends on (what apt's choice of versions needs)."""
    fields = (
        '{{.Package}}\t{{.Version}}\t{{index . "Source"}}\t{{index . "Depends"}}\t{{index . "Pre-Depends"}}'
    )
    out = aptly("snapshot", "search", f"-format={fields}", snapshot, "Name (% *)", what=f"reading {snapshot}")
    rows = [line.split("\t") for line in out.splitlines() if line.count("\t") == 4]
    return [
        apt_plan.Stanza(name, version, ", ".join(filter(None, deps)), source)
        for name, version, source, *deps in rows
    ]


def _provided(aptly: Aptly, snapshot: str, name: str) -> bool:
    try:
        provides = aptly(
            "snapshot", "search", "-format={{.Provides}}", snapshot, f"Provides (% *{name}*)",
            what=f"looking for what provides {name}",
        )  # fmt: skip
    except UserError as exc:
        if "no results" in str(exc):
            return False
        raise
    return name in apt_plan.provided_names(provides)


def _check_need(
    keys: list[str],
    needed: list[str],
    versioned: list[apt_plan.Requirement],
    upstreams: list[apt_plan.Upstream],
) -> None:
    sources = ", ".join(f"{u.name} ({u.url} {' '.join(u.distributions)})" for u in upstreams)
    missing = apt_plan.missing_packages(needed, {k.split("_", 1)[0] for k in keys})
    if missing:
        raise UserError(
            f"package {missing[0]} is needed but no upstream has it: {sources}"
            + (f" (and {len(missing) - 1} more: {', '.join(missing[1:6])})" if len(missing) > 1 else "")
        )
    present = set(keys)
    unmet = [r for r in versioned if not r.met_by(present)]
    if unmet:
        r = unmet[0]
        raise UserError(
            f"package {r.name} {r.version} is needed ({r.why}) but no upstream has that version: {sources}"
            + (f" (and {len(unmet) - 1} more)" if len(unmet) > 1 else "")
        )


def sync(
    store: Path,
    upstreams: list[apt_plan.Upstream],
    needed: list[str],
    architectures: list[str],
    log: Any = print,
    versioned: list[apt_plan.Requirement] | None = None,
) -> SnapshotInfo:
    """Mirror each upstream filtered to the need, snapshot, merge, close dependencies across upstreams,
    check, publish signed, flip `current`."""
    versioned = versioned or []
    key = sitekey.ensure(store)
    aptly = Aptly(store, architectures)
    snap_id = apt_plan.snapshot_id()
    if (packages_dir(store) / "snapshots" / f"{snap_id}.json").exists():
        raise UserError(f"snapshot {snap_id} exists already; sync again in a second")
    _drop_orphans(store, aptly)
    made: list[str] = []
    more: list[str] = []  # dependencies, possibly virtual
    siblings: list[str] = []  # packages at exact versions (apt_plan.held_back)
    try:
        keyrings = {u.name: pinned_keyring(store, u) for u in upstreams}
        for rounds in range(1, MAX_ROUNDS + 1):
            query = apt_plan.filter_query([*needed, *siblings], versioned, more)
            _update_mirrors(aptly, keyrings, upstreams, query, architectures, log)
            made = _snapshot_round(aptly, upstreams, snap_id)
            unmet = _unmet(aptly, made[-1])
            held = apt_plan.held_back(_stanzas(aptly, made[-1]))
            new = [d for d in unmet if d not in more]
            new_siblings = [n for n in held if n not in siblings]
            if not (new or new_siblings) or rounds == MAX_ROUNDS:
                break
            log(
                f"{len(new)} dependencies are in other upstreams, {len(new_siblings)} siblings of updated "
                "packages are not yet mirrored; mirroring them too ..."
            )
            more = sorted({*more, *new})
            siblings = sorted({*siblings, *new_siblings})
            _drop(aptly, snap_id, made, published=False)
            made = []
        site = made[-1]
        keys = packages_of(aptly, site)
        _check_need(keys, needed, versioned, upstreams)
        if unmet:
            raise UserError(
                f"dependency {unmet[0]} of the site's packages is in no upstream "
                f"({rounds} round(s) of mirroring): "
                + ", ".join(u.name for u in upstreams)
                + (f" (and {len(unmet) - 1} more: {', '.join(unmet[1:6])})" if len(unmet) > 1 else "")
            )
        if held:
            more_held = " ..." if len(held) > 8 else ""
            log(
                f"warning: apt will hold back {', '.join(held[:8])}{more_held}: a newest version depends "
                "on a version no upstream has"
            )
        log(f"publishing {snap_id} ({len(keys)} packages) ...")
        aptly(
            "publish",
            "snapshot",
            "-skip-contents",  # Contents indexes serve apt-file only, and cost a third of the sync
            f"-distribution={snap_id}",
            f"-component={COMPONENT}",
            f"-gpg-key={key.fingerprint}",
            "-acquire-by-hash",
            site,
            PREFIX,
            what=f"publishing {snap_id}",
        )
    except BaseException:
        # Clean up what this sync made; the error that stopped it is the one to report.
        with contextlib.suppress(UserError):
            _drop(aptly, snap_id, made, published=False)
        raise
    finally:
        sitekey.stop_agent(key.homedir)
    info = SnapshotInfo(
        snap_id, len(keys), _pool_bytes(store, keys), [m.rsplit("-", 1)[0] for m in made[:-1]]
    )
    atomic.write_text(
        packages_dir(store) / "snapshots" / f"{snap_id}.json",
        json.dumps(
            {
                **asdict(info),
                "needed": needed,
                "versioned": [f"{r.name}={r.version}" for r in versioned],
                # What preflight holds each host's release against (roles/preflight).
                "releases": apt_plan.debian_releases(upstreams),
            },
            indent=2,
        ),
    )
    atomic.write_text(packages_dir(store) / "current", snap_id + "\n")
    info.current = True
    return info


def _drop(aptly: Aptly, snap_id: str, snapshots: list[str], *, published: bool) -> None:
    """Remove one snapshot's publish and snapshots (best effort on a failed sync)."""
    if published or f"{PREFIX} {snap_id}" in aptly("publish", "list", "-raw", what="listing publishes"):
        aptly("publish", "drop", "-force-drop", snap_id, PREFIX, what=f"dropping {snap_id}")
    for snap in reversed(snapshots):
        subprocess.run(
            ["aptly", f"-config={aptly.conf}", "snapshot", "drop", "-force", snap],
            capture_output=True,
            check=False,
        )


def _drop_orphans(store: Path, aptly: Aptly) -> None:
    """What a killed sync left: publishes and snapshots of ids that never got their record."""
    recorded = {p.stem for p in (packages_dir(store) / "snapshots").glob("*.json")}
    for line in aptly("publish", "list", "-raw", what="listing publishes").splitlines():
        prefix, _, dist = line.partition(" ")
        if prefix == PREFIX and dist not in recorded:
            aptly("publish", "drop", "-force-drop", dist, PREFIX, what=f"dropping unfinished {dist}")
    for snap in sorted(aptly.names("snapshot"), reverse=True):  # the merged site-<id> before its parts
        snap_id = snap.rsplit("-", 1)[-1]
        if apt_plan.SNAPSHOT_ID.match(snap_id) and snap_id not in recorded:
            aptly("snapshot", "drop", "-force", snap, what=f"dropping unfinished {snap}")


def listing(store: Path) -> list[SnapshotInfo]:
    now = current(store)
    rows = []
    for path in sorted((packages_dir(store) / "snapshots").glob("*.json")):
        data = json.loads(path.read_text())
        data.pop("needed", None)
        info = SnapshotInfo(**{k: data[k] for k in ("id", "packages", "bytes", "upstreams")})
        info.current = info.id == now
        rows.append(info)
    return rows


def prune(store: Path, keep: int) -> list[str]:
    """Drop all but the newest `keep` snapshots (never the current one); free their unreferenced packages.
    The OS images made from a dropped snapshot for network installs go with it."""
    from sovinfra.netboot import image

    if keep < 1:
        raise UserError("--keep must be at least 1")
    rows = listing(store)
    drop = apt_plan.prune_plan([r.id for r in rows], current(store), keep)
    if not drop:
        return []
    aptly = Aptly(store)
    for snap_id in drop:
        info = next(r for r in rows if r.id == snap_id)
        _drop(
            aptly,
            snap_id,
            [f"{m}-{snap_id}" for m in info.upstreams] + [site_name(snap_id)],
            published=True,
        )
        (packages_dir(store) / "snapshots" / f"{snap_id}.json").unlink()
        shutil.rmtree(image.image_dir(store, snap_id), ignore_errors=True)
    aptly("db", "cleanup", what="freeing unreferenced packages")
    return drop
