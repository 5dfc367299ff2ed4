"""Export bundles for removable media: blobs + a manifest + the manifest's checksum (+ an ssh signature).

manifest.json         {"format": 2, "repos": {repo: {"refs": {...}, "commits": [manifest, ...]}},
                       "files": {store path: {"size", "sha256", "parts"}}}  (format 1: no "files")
manifest.json.sha256  sha256 of manifest.json
manifest.json.sig     optional: `ssh-keygen -Y sign -n sovinfra-mirror` with the site's key
blobs/sha256/<hex>    every file, by content
files/<store path>    the site's package snapshots, their records, public key and wheelhouse
                      (`bundle_files`), split into .partNNN above the part size
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from sovinfra.errors import UserError
from sovinfra.mirror import bundle_files, names
from sovinfra.mirror.store import Commit, Store

FORMAT = 2
READABLE = (1, 2)
NAMESPACE = "sovinfra-mirror"
SIGNER = "sovinfra-mirror"


def build_manifest(store: Store, repos: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"format": FORMAT, "repos": {}}
    for repo in repos:
        commits = store.commits(repo)
        if not commits:
            raise UserError(f"{repo}: not in the mirror (have: {', '.join(store.repos()) or 'nothing'})")
        out["repos"][repo] = {
            "refs": store.refs(repo),
            "commits": [store.commit(repo, c).to_json() for c in commits],
        }
    return out


def blobs(manifest: dict[str, Any]) -> dict[str, int]:
    found: dict[str, int] = {}
    for data in manifest["repos"].values():
        for commit in data["commits"]:
            for f in commit["files"]:
                found[f["sha256"]] = f["size"]
    return found


def export(
    store: Store, dest: Path, repos: list[str], sign_key: Path | None, part_size: int = bundle_files.FAT_PART
) -> dict[str, Any]:
    if dest.exists() and any(dest.iterdir()):
        raise UserError(f"{dest}: not empty; export into a new or empty directory")
    manifest = build_manifest(store, repos or store.repos())
    manifest["files"] = bundle_files.export_files(store.root, dest, part_size)
    (dest / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    for sha256 in sorted(blobs(manifest)):
        shutil.copyfile(store.blob_path(sha256), dest / "blobs" / "sha256" / sha256)
    data = json.dumps(manifest, indent=1, sort_keys=True).encode()
    (dest / "manifest.json").write_bytes(data)
    (dest / "manifest.json.sha256").write_text(f"{hashlib.sha256(data).hexdigest()}  manifest.json\n")
    if sign_key:
        cmd = [
            "ssh-keygen",
            "-q",
            "-Y",
            "sign",
            "-f",
            str(sign_key),
            "-n",
            NAMESPACE,
            str(dest / "manifest.json"),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise UserError(f"{sign_key}: signing failed: {proc.stderr.strip()}")
    return manifest


def _check_structure(manifest: Any, where: str) -> None:
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") not in READABLE
        or not isinstance(manifest.get("repos"), dict)
    ):
        raise UserError(f"{where}: not a sovinfra bundle manifest (format {', '.join(map(str, READABLE))})")
    bundle_files.check_entries(manifest.get("files", {}), where)
    for repo, data in manifest["repos"].items():
        names.check_repo_id(repo, where)
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("refs"), dict)
            or not isinstance(data.get("commits"), list)
        ):
            raise UserError(f"{where}: repos.{repo}: needs refs and commits")
        commit_ids = set()
        for c in data["commits"]:
            try:
                commit = Commit.from_json(c)
            except (KeyError, TypeError) as exc:
                raise UserError(f"{where}: repos.{repo}: malformed commit ({exc})") from exc
            if not names.COMMIT.match(commit.commit) or commit.repo != repo:
                raise UserError(f"{where}: repos.{repo}: bad commit id {commit.commit!r}")
            commit_ids.add(commit.commit)
            for f in commit.files:
                names.check_path(f.path, f"{where}: repos.{repo}")
                if (
                    not isinstance(f.sha256, str)
                    or len(f.sha256) != 64
                    or any(ch not in "0123456789abcdef" for ch in f.sha256)
                ):
                    raise UserError(f"{where}: repos.{repo}: {f.path}: bad sha256")
        for ref, sha in data["refs"].items():
            names.check_revision(ref, f"{where}: repos.{repo}.refs")
            if sha not in commit_ids:
                raise UserError(f"{where}: repos.{repo}.refs.{ref}: points at a commit the bundle lacks")


def read_verified(bundle_dir: Path, trusted_signers: Path | None) -> dict[str, Any]:
    """The manifest, after its checksum (and signature, when signers are given) and every name check."""
    manifest_file = bundle_dir / "manifest.json"
    sum_file = bundle_dir / "manifest.json.sha256"
    if not manifest_file.is_file() or not sum_file.is_file():
        raise UserError(f"{bundle_dir}: not an export bundle (manifest.json and manifest.json.sha256 needed)")
    data = manifest_file.read_bytes()
    expected = sum_file.read_text().split()[0] if sum_file.read_text().split() else ""
    if hashlib.sha256(data).hexdigest() != expected:
        raise UserError(f"{manifest_file}: checksum mismatch: the bundle was altered; nothing imported")
    if trusted_signers:
        sig = bundle_dir / "manifest.json.sig"
        if not sig.is_file():
            raise UserError(
                f"{bundle_dir}: unsigned bundle, but --trusted-signers was given; nothing imported"
            )
        cmd = [
            "ssh-keygen",
            "-Y",
            "verify",
            "-f",
            str(trusted_signers),
            "-I",
            SIGNER,
            "-n",
            NAMESPACE,
            "-s",
            str(sig),
        ]
        proc = subprocess.run(cmd, input=data, capture_output=True, check=False)
        if proc.returncode != 0:
            raise UserError(f"{sig}: signature not valid for {trusted_signers}; nothing imported")
    try:
        manifest = json.loads(data)
    except json.JSONDecodeError as exc:
        raise UserError(f"{manifest_file}: not JSON ({exc})") from exc
    _check_structure(manifest, str(manifest_file))
    return manifest
