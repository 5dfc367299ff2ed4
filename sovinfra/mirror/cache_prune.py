"""What in a node's model cache no service declares any more: whole models, old revisions, their blobs.

Standard library only: it runs on the node, in the agent's venv, after the converge has pulled what is
declared. `python -m sovinfra.mirror.cache_prune CACHE_DIR [--keep ORG/NAME@REVISION]...` prints JSON:
the paths (relative to the cache) that can go and the bytes they hold; the inference role removes them
(and lists them in check mode). Only `models--*` folders are judged (the layout `pull` writes); a blob
stays while any kept revision links to it, so a model two services share stays while one declares it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sovinfra.errors import UserError
from sovinfra.mirror import names
from sovinfra.mirror.pull import repo_cache_dir

PREFIX = "models--"


@dataclass
class CachedRepo:
    """One model's folder as found: its revisions (commit -> blob names its files link to), refs, blobs
    and the verification markers (`.sovinfra/ready-<commit>`, `stat-<commit>`)."""

    snapshots: dict[str, set[str]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    blobs: set[str] = field(default_factory=set)
    markers: set[str] = field(default_factory=set)


def plan(cached: dict[str, CachedRepo], keep: dict[str, set[str]]) -> list[str]:
    """Paths (relative to the cache) to remove: models not kept, whole; of kept models, the revisions not
    kept (a kept revision may be a branch: its ref names the commit), their refs and markers, and the
    blobs only they link to."""
    gone: list[str] = []
    for folder, repo in sorted(cached.items()):
        wanted = keep.get(folder)
        if wanted is None:
            gone.append(folder)
            continue
        commits = {repo.refs.get(rev, rev) for rev in wanted}
        gone += [f"{folder}/snapshots/{c}" for c in sorted(repo.snapshots) if c not in commits]
        gone += [
            f"{folder}/refs/{r}" for r, c in sorted(repo.refs.items()) if r not in wanted and c not in commits
        ]
        gone += [
            f"{folder}/.sovinfra/{m}" for m in sorted(repo.markers) if m.split("-", 1)[-1] not in commits
        ]
        linked = set().union(*(repo.snapshots.get(c, set()) for c in commits))
        gone += [f"{folder}/blobs/{b}" for b in sorted(repo.blobs - linked)]
    return gone


def scan(cache_dir: Path) -> dict[str, CachedRepo]:
    cached: dict[str, CachedRepo] = {}
    for base in sorted(p for p in cache_dir.glob(PREFIX + "*") if p.is_dir() and not p.is_symlink()):
        repo = cached.setdefault(base.name, CachedRepo())
        for snapshot in (base / "snapshots").glob("*"):
            repo.snapshots[snapshot.name] = {
                Path(os.readlink(link)).name for link in snapshot.rglob("*") if link.is_symlink()
            }
        repo.refs = {r.name: r.read_text().strip() for r in (base / "refs").glob("*") if r.is_file()}
        repo.blobs = {b.name for b in (base / "blobs").glob("*")}
        repo.markers = {
            m.name for m in (base / ".sovinfra").glob("*") if m.name.startswith(("ready-", "stat-"))
        }
    return cached


def _size(path: Path) -> int:
    if path.is_symlink() or not path.is_dir():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir() or p.is_symlink())


def unused(cache_dir: Path, keep: Iterable[tuple[str, str]]) -> tuple[list[str], int]:
    """What `plan` finds in the cache for these (repo, revision) pairs, and the bytes it holds."""
    kept: dict[str, set[str]] = {}
    for repo, revision in keep:
        kept.setdefault(repo_cache_dir(cache_dir, repo).name, set()).add(revision)
    gone = plan(scan(cache_dir), kept)
    return gone, sum(_size(cache_dir / rel) for rel in gone)


def _keep(text: str) -> tuple[str, str]:
    repo, sep, revision = text.rpartition("@")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: expected ORG/NAME@REVISION")
    try:
        return names.check_repo_id(repo, "--keep"), names.check_revision(revision, "--keep")
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sovinfra.mirror.cache_prune", description=__doc__)
    parser.add_argument("cache_dir", type=Path, help="the node's model cache (model_cache_dir)")
    parser.add_argument("--keep", type=_keep, action="append", default=[], help="ORG/NAME@REVISION to keep")
    args = parser.parse_args(argv)
    gone, size = unused(args.cache_dir, args.keep)
    print(json.dumps({"unused": gone, "bytes": size}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
