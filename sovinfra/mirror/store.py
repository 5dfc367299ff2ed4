"""The content-addressed store: blobs by sha256, a manifest per repo commit, refs published last.

Layout under the store root:
  blobs/sha256/<hex>                     file contents, written aside, fsynced, renamed, read-only
  repos/<org>/<name>/commits/<sha>.json  the manifest of one commit (path, size, sha256, git sha1, lfs)
  repos/<org>/<name>/refs.json           branch/tag -> commit; written last, atomically
  tmp/                                   unfinished writes: invisible, swept on the next import
A commit is visible only once its manifest exists, and reachable by name once refs.json says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sovinfra import atomic
from sovinfra.errors import UserError
from sovinfra.mirror import names

CHUNK = 1 << 20
FLUSH_WINDOW = 32 * CHUNK


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str
    git_sha1: str  # git blob id of the content (non-LFS) or of its LFS pointer (LFS), as the Hub lists
    lfs: bool


@dataclass(frozen=True)
class Commit:
    repo: str
    commit: str
    files: tuple[FileEntry, ...]
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "commit": self.commit,
            "source": self.source,
            "files": [asdict(f) for f in self.files],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Commit:
        return cls(
            data["repo"], data["commit"], tuple(FileEntry(**f) for f in data["files"]), data.get("source", "")
        )


def git_blob_sha1(size: int, chunks: Iterator[bytes] | None = None, content: bytes | None = None) -> str:
    digest = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
    for chunk in chunks or [content or b""]:
        digest.update(chunk)
    return digest.hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _write_all(fd: int, data: bytes, offset: int) -> None:
    """Write data (which starts at offset) whole; each FLUSH_WINDOW written has its writeback started."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    end = offset + len(data)
    if end // FLUSH_WINDOW > offset // FLUSH_WINDOW:
        # The disk starts on what is down so far (writeback without waiting) and the page cache lets it go:
        # the final fsync has little left, and a large import does not evict everything else. Advice only:
        # a filesystem that does not take it loses nothing.
        with contextlib.suppress(OSError):
            start = end // FLUSH_WINDOW * FLUSH_WINDOW - FLUSH_WINDOW
            os.posix_fadvise(fd, start, FLUSH_WINDOW, os.POSIX_FADV_DONTNEED)


def _copy_hashing(source: BinaryIO, fd: int, store_root: Path) -> tuple[str, int, list[bytes]]:
    """Copy a stream to fd and fsync it, hashing the same bytes; returns sha256, size and, for a small
    stream, its chunks (its git blob id needs them).

    Read-ahead and write-behind: one thread reads chunk k+1 and another writes chunk k while this one
    hashes chunk k (reads, hashlib and os.write all let go of the GIL), so a copy costs about the slowest of
    the three, not their sum; one read is in flight at a time, so the stream is read in order. The bytes
    written are the bytes hashed: each chunk is one immutable object. A failed write (a full disk) is the
    store's error, named, not a traceback."""
    sha256 = hashlib.sha256()
    small: list[bytes] = []
    size = 0

    def written(pending: Future[None] | None) -> None:
        try:
            if pending:
                pending.result()
        except OSError as exc:
            raise UserError(f"{store_root}: cannot write a blob: {exc.strerror or exc}") from exc

    with ThreadPoolExecutor(1) as reader, ThreadPoolExecutor(1) as writer:
        pending: Future[None] | None = None
        ahead = reader.submit(source.read, CHUNK)
        while chunk := ahead.result():
            ahead = reader.submit(source.read, CHUNK)
            written(pending)
            pending = writer.submit(_write_all, fd, chunk, size)
            sha256.update(chunk)
            size += len(chunk)
            if size <= names.LFS_MIN_SIZE:
                small.append(chunk)
        written(pending)
        written(writer.submit(os.fsync, fd))
    return sha256.hexdigest(), size, small


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root

    # -- paths
    def blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / "sha256" / sha256

    def repo_dir(self, repo: str) -> Path:
        return self.root / "repos" / repo

    # -- writing
    def add_blob(self, source: BinaryIO, expected_sha256: str | None = None) -> tuple[str, int, str]:
        """Copy a stream into the store, hashing as it goes (one read pass); returns sha256, size, git sha1.

        A blob already present is not rewritten. A stream whose hash differs from expected_sha256 is
        refused and leaves nothing behind.
        """
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix="blob-")
        try:
            try:
                hexdigest, size, chunks = _copy_hashing(source, fd, self.root)
            finally:
                os.close(fd)
            if expected_sha256 and hexdigest != expected_sha256:
                raise UserError(f"content hash {hexdigest} differs from the expected {expected_sha256}")
            target = self.blob_path(hexdigest)
            if target.exists():
                os.unlink(tmp)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(tmp, 0o444)
                os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        git = git_blob_sha1(size, iter(chunks)) if size <= names.LFS_MIN_SIZE else ""
        return hexdigest, size, git

    def publish(self, commit: Commit, refs: dict[str, str]) -> None:
        """Manifest first, refs last: a reader never sees a ref to a commit whose files are missing."""
        for f in commit.files:
            if not self.blob_path(f.sha256).exists():
                raise UserError(f"{commit.repo}@{commit.commit}: blob for {f.path} is missing; not published")
        manifest = self.repo_dir(commit.repo) / "commits" / f"{commit.commit}.json"
        atomic.write_bytes(manifest, json.dumps(commit.to_json(), indent=1, sort_keys=True).encode())
        current = self.refs(commit.repo)
        current.update(refs)
        atomic.write_bytes(
            self.repo_dir(commit.repo) / "refs.json", json.dumps(current, indent=1, sort_keys=True).encode()
        )

    def sweep_tmp(self) -> None:
        """Leftovers of an interrupted import: never visible, removed before the next one."""
        tmp_dir = self.root / "tmp"
        if tmp_dir.is_dir():
            for leftover in tmp_dir.iterdir():
                leftover.unlink(missing_ok=True)

    # -- reading
    def repos(self) -> list[str]:
        base = self.root / "repos"
        if not base.is_dir():
            return []
        return sorted(
            f"{org.name}/{name.name}"
            for org in base.iterdir()
            if org.is_dir()
            for name in org.iterdir()
            if (name / "refs.json").exists()
        )

    def refs(self, repo: str) -> dict[str, str]:
        path = self.repo_dir(repo) / "refs.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def commits(self, repo: str) -> list[str]:
        return sorted(p.stem for p in (self.repo_dir(repo) / "commits").glob("*.json"))

    def commit(self, repo: str, commit: str) -> Commit:
        path = self.repo_dir(repo) / "commits" / f"{commit}.json"
        if not path.exists():
            raise UserError(f"{repo}: no commit {commit} in the mirror")
        return Commit.from_json(json.loads(path.read_text()))

    def resolve(self, repo: str, revision: str) -> str:
        if names.COMMIT.match(revision) and revision in self.commits(repo):
            return revision
        refs = self.refs(repo)
        if revision not in refs:
            raise UserError(
                f"{repo}: no revision {revision!r} in the mirror (have: {', '.join(sorted(refs))})"
            )
        return refs[revision]


def hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
