"""Pulling a pinned model from the mirror into a node's Hugging Face cache, verified before it is ready.

Standard library only: it runs in the node agent's venv. Files download in parallel streams, each
hashed while it is written (no second read); a cut transfer resumes from its partial file with a
Range request; a file only becomes visible (blobs/<etag>, then the snapshot symlink) once its sha256
matches; the model is marked ready (.sovinfra/ready-<commit>) only when every file has.

Cache layout (what huggingface_hub and vLLM read with HF_HUB_OFFLINE=1):
  models--<org>--<name>/blobs/<etag>                 etag = sha256 (LFS) or git blob sha1
  models--<org>--<name>/snapshots/<commit>/<path>    relative symlinks to the blobs
  models--<org>--<name>/refs/<branch>                the commit
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sovinfra.errors import UserError
from sovinfra.mirror import cache_check, names
from sovinfra.mirror.store import hash_file

CHUNK = 1 << 20
PARTIAL = ".sovinfra-partial"


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    sha256: str
    etag: str


@dataclass
class PullResult:
    repo: str
    commit: str
    downloaded: list[str]
    bytes: int
    changed: bool


def repo_cache_dir(cache_dir: Path, repo: str) -> Path:
    return cache_dir / ("models--" + repo.replace("/", "--"))


def _get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:
        code = exc.headers.get("X-Error-Code", "")
        raise UserError(f"{url}: {exc.code} {code}".strip()) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise UserError(f"{url}: mirror not reachable: {exc}") from exc


def remote_files(info: dict[str, Any]) -> list[RemoteFile]:
    files = []
    for s in info.get("siblings", []):
        path = names.check_path(str(s["rfilename"]), "mirror listing")
        lfs = s.get("lfs") or {}
        sha256 = lfs.get("sha256") or s.get("sha256")
        if not sha256 or not names.SHA256.match(sha256):
            raise UserError(
                f"mirror listing: {path}: no sha256 to verify against (is the endpoint a sovinfra mirror?)"
            )
        etag = sha256 if lfs else str(s.get("blobId") or sha256)
        files.append(RemoteFile(path, int(s["size"]), sha256, etag))
    return files


def _download(endpoint: str, repo: str, commit: str, f: RemoteFile, blobs: Path) -> int:
    """One file into blobs/<etag>, hashed as it streams; resumes a partial; returns bytes fetched."""
    final = blobs / f.etag
    partial = blobs / (f.etag + PARTIAL)
    digest = hashlib.sha256()
    have = 0
    if partial.exists():  # resume: what is already on disk is hashed once, then we continue
        with partial.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
                have += len(chunk)
        if have > f.size:
            partial.unlink()
            digest, have = hashlib.sha256(), 0
    url = f"{endpoint}/{repo}/resolve/{commit}/{urllib.parse.quote(f.path)}"
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    fetched = 0
    try:
        with urllib.request.urlopen(request, timeout=60) as resp, partial.open("ab") as out:
            if have and resp.status != 206:  # the server ignored the range: start over
                out.truncate(0)
                digest, have = hashlib.sha256(), 0
            while chunk := resp.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
                fetched += len(chunk)
            out.flush()
            os.fsync(out.fileno())
    except (urllib.error.URLError, OSError) as exc:
        raise UserError(f"{f.path}: transfer failed ({exc}); the next pull resumes it") from exc
    if digest.hexdigest() != f.sha256 or have + fetched != f.size:
        partial.unlink(missing_ok=True)
        raise UserError(
            f"{f.path}: sha256 {digest.hexdigest()} does not match the mirror's {f.sha256}; "
            "discarded, the model is not ready"
        )
    os.replace(partial, final)
    return fetched


def _link(snapshot: Path, f: RemoteFile) -> None:
    link = snapshot / f.path
    link.parent.mkdir(parents=True, exist_ok=True)
    target = os.path.relpath(snapshot.parent.parent / "blobs" / f.etag, link.parent)
    if link.is_symlink() and os.readlink(link) == target:
        return
    tmp = link.with_name(f".{link.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(target)
    os.replace(tmp, link)


def _present(blob: Path, f: RemoteFile, rehash: bool) -> bool:
    """Whether a cached blob can stay; rehash: its content is judged too (it changed since verified)."""
    if not blob.is_file() or blob.stat().st_size != f.size:
        return False
    if rehash and hash_file(blob) != f.sha256:
        blob.unlink()  # rotted on disk: fetch it again
        return False
    return True


def pull(
    endpoint: str,
    repo: str,
    revision: str,
    cache_dir: Path,
    streams: int = 4,
    rehash_existing: bool = False,
    via: str = "",
) -> PullResult:
    """Pull `repo` at `revision` from the mirror at `endpoint`. With `via` (a rack cache in front of it),
    the files' bytes come through the cache; the listing, and so every sha256 they are judged by, comes
    from the mirror itself."""
    names.check_repo_id(repo, "repo")
    names.check_revision(revision)
    endpoint = endpoint.rstrip("/")
    source = via.rstrip("/") or endpoint
    info = _get_json(f"{endpoint}/api/models/{repo}/revision/{urllib.parse.quote(revision)}")
    commit = str(info["sha"])
    files = remote_files(info)
    base = repo_cache_dir(cache_dir, repo)
    blobs, snapshot = base / "blobs", base / "snapshots" / commit
    marker = base / ".sovinfra" / f"ready-{commit}"
    blobs.mkdir(parents=True, exist_ok=True)
    # A blob written since it was verified (or never recorded) is re-hashed: a flipped byte is fetched again.
    stats = cache_check.load_stats(base, commit)
    todo = [
        f
        for f in files
        if not _present(
            blobs / f.etag, f, rehash_existing or not cache_check.unchanged(stats, blobs / f.etag)
        )
    ]
    if todo:
        marker.unlink(missing_ok=True)  # not ready while anything is missing or being replaced
    with ThreadPoolExecutor(max_workers=max(1, streams)) as pool:
        fetched = list(pool.map(lambda f: _download(source, repo, commit, f, blobs), todo))
    for f in files:
        _link(snapshot, f)
    changed = bool(todo)
    if not names.COMMIT.match(revision):
        ref = base / "refs" / revision
        if not ref.exists() or ref.read_text() != commit:
            ref.parent.mkdir(exist_ok=True)
            ref.write_text(commit)
            changed = True
    ready = json.dumps({f.path: f.sha256 for f in files}, indent=1, sort_keys=True)
    if not marker.exists() or marker.read_text() != ready:
        marker.parent.mkdir(exist_ok=True)
        marker.write_text(ready)  # last: every file is in place and verified
        changed = True
    verified = sorted({blobs / f.etag for f in files})
    if any(not cache_check.unchanged(stats, b) for b in verified):
        cache_check.record(base, commit, verified)  # bookkeeping of what was verified, not a change
    return PullResult(repo, commit, [f.path for f in todo], sum(fetched), changed)


def is_ready(cache_dir: Path, repo: str, commit: str) -> bool:
    return (repo_cache_dir(cache_dir, repo) / ".sovinfra" / f"ready-{commit}").exists()
