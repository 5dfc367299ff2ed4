"""Bringing models into the store: a local folder, an export bundle, or a Hub repo (control node online)."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from sovinfra.errors import UserError
from sovinfra.mirror import bundle, bundle_files, names
from sovinfra.mirror.store import Commit, FileEntry, Store, git_blob_sha1, lfs_pointer

Log = Callable[[str], None]


def _entry(path: str, sha256: str, size: int, content_git_sha1: str, lfs: bool) -> FileEntry:
    git = content_git_sha1
    if lfs:
        pointer = lfs_pointer(sha256, size)
        git = git_blob_sha1(len(pointer), content=pointer)
    return FileEntry(path=path, size=size, sha256=sha256, git_sha1=git, lfs=lfs)


def content_commit_id(files: list[FileEntry]) -> str:
    """A folder has no git history: its commit id is derived from its content (same files, same id)."""
    canonical = json.dumps(sorted((f.path, f.sha256) for f in files)).encode()
    return hashlib.sha1(canonical, usedforsecurity=False).hexdigest()


def _folder_files(folder: Path, allow_pickle: bool) -> list[tuple[str, Path]]:
    found = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if rel.split("/")[0] in (".git", ".cache") or path.is_dir():
            continue
        if not path.is_file():
            raise UserError(f"{path}: not a regular file")
        names.check_path(rel, str(folder))
        names.check_format(rel, allow_pickle, str(folder))
        found.append((rel, path))
    if not found:
        raise UserError(f"{folder}: no files to import")
    return found


def import_folder(store: Store, folder: Path, repo: str, revision: str, allow_pickle: bool, log: Log) -> str:
    names.check_repo_id(repo)
    names.check_revision(revision)
    files = _folder_files(folder, allow_pickle)  # every check before the first write
    store.sweep_tmp()
    entries = []
    for rel, path in files:
        with path.open("rb") as fh:
            sha256, size, git = store.add_blob(fh)
        entries.append(_entry(rel, sha256, size, git, names.is_lfs(rel, size)))
    commit = Commit(repo, content_commit_id(entries), tuple(entries), source=f"folder:{folder}")
    store.publish(commit, {revision: commit.commit})
    log(f"{repo}@{revision} -> {commit.commit} ({len(entries)} files)")
    return commit.commit


def import_bundle(store: Store, bundle_dir: Path, trusted_signers: Path | None, log: Log) -> list[str]:
    manifest = bundle.read_verified(bundle_dir, trusted_signers)  # checksum, signature, names, paths
    store.sweep_tmp()
    # The site's files are verified into a staging area named by the manifest (a rerun resumes there).
    files = manifest.get("files", {})
    digest = hashlib.sha256((bundle_dir / "manifest.json").read_bytes()).hexdigest()[:16]
    stage = store.root / "staging" / f"bundle-{digest}"
    bundle_files.stage_files(store.root, bundle_dir, files, stage, log)
    # Every blob is hashed on its way in; one bad blob and nothing is published.
    for sha256, size in sorted(bundle.blobs(manifest).items()):
        source = bundle_dir / "blobs" / "sha256" / sha256
        if not source.is_file() or source.stat().st_size != size:
            raise UserError(f"{bundle_dir}: blob {sha256} is missing or has the wrong size; nothing imported")
        with source.open("rb") as fh:
            try:
                store.add_blob(fh, expected_sha256=sha256)
            except UserError as exc:
                raise UserError(f"{bundle_dir}: blob {sha256} is corrupt ({exc}); nothing imported") from exc
    imported = []
    for repo, data in sorted(manifest["repos"].items()):
        commits = [Commit.from_json(c) for c in data["commits"]]
        for commit in commits:
            refs = {name: sha for name, sha in data["refs"].items() if sha == commit.commit}
            store.publish(commit, refs)
        imported.append(repo)
        log(f"{repo}: {len(commits)} commit(s), refs {', '.join(sorted(data['refs']))}")
    bundle_files.install_files(store.root, files, stage)
    shutil.rmtree(stage, ignore_errors=True)
    return imported


def import_hub(store: Store, repo: str, revision: str, allow_pickle: bool, log: Log) -> str:
    """From a Hub endpoint (HF_ENDPOINT), checked against the upstream hashes; keeps the upstream commit."""
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    names.check_repo_id(repo, "SOURCE")
    names.check_revision(revision)
    try:
        info = HfApi().model_info(repo, revision=revision, files_metadata=True)
    except HfHubHTTPError as exc:
        raise UserError(f"{repo}@{revision}: the hub answered: {exc}") from exc
    except OSError as exc:
        raise UserError(f"{repo}@{revision}: the hub cannot be reached: {exc}") from exc
    siblings = info.siblings or []
    for s in siblings:
        names.check_path(s.rfilename, repo)
        names.check_format(s.rfilename, allow_pickle, repo)
    store.sweep_tmp()
    entries = []
    with tempfile.TemporaryDirectory() as cache:
        for s in siblings:
            local = Path(hf_hub_download(repo, s.rfilename, revision=info.sha, cache_dir=cache))
            expected = s.lfs.sha256 if s.lfs else None
            with local.open("rb") as fh:
                sha256, size, git = store.add_blob(fh, expected_sha256=expected)
            if not s.lfs and s.blob_id and git != s.blob_id:
                raise UserError(f"{repo}: {s.rfilename}: git blob id {git} differs from upstream {s.blob_id}")
            entries.append(_entry(s.rfilename, sha256, size, git, bool(s.lfs)))
    assert info.sha is not None
    commit = Commit(repo, info.sha, tuple(entries), source=f"hub:{repo}")
    store.publish(commit, {revision: info.sha} if not names.COMMIT.match(revision) else {})
    log(f"{repo}@{revision} -> {info.sha} ({len(entries)} files, verified against upstream hashes)")
    return info.sha
