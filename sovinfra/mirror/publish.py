"""Publishing the store for nginx: the Hub API as static JSON, file symlinks, and header maps.

Every read the Hugging Face clients make is answered by nginx alone from what this writes:
  api/models/<repo>/__info.json, revision/<rev>, refs, tree/<commit>/<dir>/__tree[_recursive].json
  <repo>/resolve/<commit>/<path> -> symlink to blobs/sha256/<hex> (sendfile and Range come free)
  maps/*.map                     nginx maps: known repos, rev -> commit, ETag and LFS size per file
A publish builds a new generation beside the live one and swaps one symlink: never half-visible.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from sovinfra.mirror.store import Commit, FileEntry, Store, lfs_pointer

EPOCH = "1980-01-01T00:00:00.000Z"  # the store keeps no dates; clients only need the field to parse


def _sibling(f: FileEntry) -> dict[str, Any]:
    # sha256 is ours (clients ignore unknown keys): nodes verify every file by it, small ones too.
    s: dict[str, Any] = {"rfilename": f.path, "size": f.size, "blobId": f.git_sha1, "sha256": f.sha256}
    if f.lfs:
        s["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": len(lfs_pointer(f.sha256, f.size))}
    return s


def model_info(commit: Commit) -> dict[str, Any]:
    return {
        "_id": commit.commit[:24],
        "id": commit.repo,
        "modelId": commit.repo,
        "sha": commit.commit,
        "private": False,
        "disabled": False,
        "gated": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "lastModified": EPOCH,
        "createdAt": EPOCH,
        "siblings": [_sibling(f) for f in commit.files],
    }


def tree_entry(f: FileEntry) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "file", "oid": f.git_sha1, "size": f.size, "path": f.path}
    if f.lfs:
        entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": len(lfs_pointer(f.sha256, f.size))}
    return entry


def _dirs(files: Iterable[FileEntry]) -> set[str]:
    out = {""}
    for f in files:
        parts = PurePosixPath(f.path).parts[:-1]
        out |= {"/".join(parts[: i + 1]) for i in range(len(parts))}
    return out


def trees(commit: Commit) -> dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """dir -> (direct listing, recursive listing), as the Hub's tree endpoint answers."""
    dirs = _dirs(commit.files)
    out = {}
    for d in sorted(dirs):
        prefix = f"{d}/" if d else ""
        direct: list[dict[str, Any]] = []
        recursive: list[dict[str, Any]] = []
        for sub in sorted(x for x in dirs if x and x.startswith(prefix) and x != d):
            oid = hashlib.sha1(sub.encode(), usedforsecurity=False).hexdigest()
            entry = {"type": "directory", "oid": oid, "size": 0, "path": sub}
            recursive.append(entry)
            if "/" not in sub[len(prefix) :]:
                direct.append(entry)
        for f in commit.files:
            if f.path.startswith(prefix):
                recursive.append(tree_entry(f))
                if "/" not in f.path[len(prefix) :]:
                    direct.append(tree_entry(f))
        out[d] = (direct, recursive)
    return out


def _nginx_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def map_lines(store: Store) -> dict[str, list[str]]:
    """The contents of the nginx map files (pure over the catalogs)."""
    maps: dict[str, list[str]] = {"repos": [], "refs": [], "etag": [], "lfs_size": []}
    for repo in store.repos():
        maps["repos"].append(f"{_nginx_str(repo)} 1;")
        for ref, sha in sorted(store.refs(repo).items()):
            maps["refs"].append(f"{_nginx_str(f'{repo}:{ref}')} {sha};")
        for sha in store.commits(repo):
            maps["refs"].append(f"{_nginx_str(f'{repo}:{sha}')} {sha};")
            for f in store.commit(repo, sha).files:
                uri = f"/{repo}/resolve/{sha}/{f.path}"
                etag = f.sha256 if f.lfs else f.git_sha1
                maps["etag"].append(f"{_nginx_str(uri)} {_nginx_str(json.dumps(etag))};")
                if f.lfs:
                    maps["lfs_size"].append(f"{_nginx_str(uri)} {f.size};")
    return maps


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, separators=(",", ":")))


def _write_repo(store: Store, repo: str, gen: Path) -> None:
    api = gen / "api" / "models" / repo
    refs = store.refs(repo)
    commits = store.commits(repo)
    default = refs.get("main") or (refs[sorted(refs)[0]] if refs else commits[-1])
    _write_json(api / "__info.json", model_info(store.commit(repo, default)))
    branches = [{"name": r, "ref": f"refs/heads/{r}", "targetCommit": c} for r, c in sorted(refs.items())]
    _write_json(api / "refs", {"branches": branches, "tags": [], "converts": []})
    for sha in commits:
        commit = store.commit(repo, sha)
        _write_json(api / "revision" / sha, model_info(commit))
        for d, (direct, recursive) in trees(commit).items():
            base = api / "tree" / sha / d
            _write_json(base / "__tree.json", direct)
            _write_json(base / "__tree_recursive.json", recursive)
        for f in commit.files:
            link = gen / repo / "resolve" / sha / f.path
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(store.blob_path(f.sha256).resolve())
    for ref, sha in refs.items():
        _write_json(api / "revision" / ref, model_info(store.commit(repo, sha)))


def publish(store: Store) -> Path:
    """Write a new generation of the site and switch `www` to it atomically; returns the live path."""
    site = store.root / "site"
    site.mkdir(parents=True, exist_ok=True)
    newest = max((int(p.name.split("-")[1]) for p in site.glob("gen-*")), default=0)
    gen = site / f"gen-{newest + 1}"
    shutil.rmtree(gen, ignore_errors=True)
    (gen / "maps").mkdir(parents=True)
    for repo in store.repos():
        _write_repo(store, repo, gen)
    for name, lines in map_lines(store).items():
        (gen / "maps" / f"{name}.map").write_text("\n".join(lines) + "\n")
    live = site / "www"
    tmp_link = site / ".www.new"
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(gen.name)
    os.replace(tmp_link, live)  # atomic: readers see the old generation or the new one
    for old in site.glob("gen-*"):
        if old != gen and old.name != os.readlink(live):
            shutil.rmtree(old, ignore_errors=True)
    return live


def catalog_digest(store: Store) -> str:
    digest = hashlib.sha256()
    for repo in store.repos():
        digest.update(json.dumps([repo, store.refs(repo), store.commits(repo)]).encode())
    return digest.hexdigest()


def publish_if_changed(store: Store) -> bool:
    """Publish when the catalog differs from what the live site was built from (idempotent converges)."""
    stamp = store.root / "site" / "catalog.sha256"
    digest = catalog_digest(store)
    if stamp.exists() and stamp.read_text() == digest and (store.root / "site" / "www").exists():
        return False
    publish(store)
    stamp.write_text(digest)
    return True
