"""The site's files in an export bundle beside the models: the published package snapshots, their
records, the site's public key, the wheelhouse and the container images (blobs, then their catalog).

In the bundle: `files/<store path>` (or `files/<store path>.partNNN` when a file is larger than the
part size, for FAT-formatted media), each listed in the manifest's "files" with size and sha256.
Import stages every file under `<store>/tmp/bundle-<manifest sha>/` as it verifies it (an interrupted
import resumes: a staged file that still hashes right is not read again), and only when all of them
verified moves them into place: package pool first, Release files last, `packages/current` at the very
end. The private key (keys/gnupg) never goes into a bundle.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sovinfra.errors import UserError
from sovinfra.mirror import apt_snapshots, tree_delta

CHUNK = 1 << 20
FAT_PART = 4 * 2**30 - 1  # FAT32's largest file
# What a bundle may carry, by store path; anything else in a manifest is refused.
PREFIXES = ("packages/aptly/public/site/", "packages/snapshots/", "wheels/files/", "images/blobs/sha256/")
# The image catalog comes after the image blobs (collect's order): it names only what is there.
SINGLES = ("packages/current", "keys/site.gpg", "keys/site.asc", "images/oci-layout", "images/index.json",
           "images/records.json")  # fmt: skip


def allowed(path: str) -> bool:
    parts = path.split("/")
    if path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        return False
    return path in SINGLES or path.startswith(PREFIXES)


def collect(store: Path) -> list[str]:
    """Store paths of the site's files that exist, in install order."""
    found: list[str] = []
    tree = apt_snapshots.published_tree(store)
    if tree.is_dir():
        rel = sorted(tree_delta.listing(tree), key=tree_delta.ship_order)
        found += [f"packages/aptly/public/site/{r}" for r in rel]
    for sub in ("packages/snapshots", "wheels/files", "images/blobs/sha256"):
        base = store / sub
        if base.is_dir():
            found += sorted(str(p.relative_to(store)) for p in base.rglob("*") if p.is_file())
    found += [s for s in SINGLES if (store / s).is_file()]
    return found


def _hash(chunks: Iterator[bytes]) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _read(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            yield chunk


def export_files(store: Path, dest: Path, part_size: int) -> dict[str, dict[str, Any]]:
    """Copy the site's files into the bundle (split above part_size); their manifest entries."""
    entries: dict[str, dict[str, Any]] = {}
    for rel in collect(store):
        source = store / rel
        target = dest / "files" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        size = source.stat().st_size
        parts = max(1, -(-size // part_size))
        digest = hashlib.sha256()
        with source.open("rb") as fh:
            for i in range(parts):
                out = target if parts == 1 else target.with_name(f"{target.name}.part{i:03d}")
                left = part_size
                with out.open("wb") as dst:
                    while left and (chunk := fh.read(min(CHUNK, left))):
                        digest.update(chunk)
                        dst.write(chunk)
                        left -= len(chunk)
        entries[rel] = {"size": size, "sha256": digest.hexdigest(), "parts": parts}
    return entries


def check_entries(files: Any, where: str) -> None:
    if not isinstance(files, dict):
        raise UserError(f"{where}: files: must be a mapping")
    for rel, entry in files.items():
        if not isinstance(rel, str) or not allowed(rel):
            raise UserError(f"{where}: files.{rel}: not a path a bundle may carry")
        ok = (
            isinstance(entry, dict)
            and isinstance(entry.get("size"), int)
            and isinstance(entry.get("parts"), int)
            and entry["parts"] >= 1
            and isinstance(entry.get("sha256"), str)
            and len(entry["sha256"]) == 64
        )
        if not ok:
            raise UserError(f"{where}: files.{rel}: needs size, parts and a sha256")


def _matches(path: Path, entry: dict[str, Any]) -> bool:
    """A file already here with the entry's size and sha256 (a staged or installed copy)."""
    return (
        path.is_file() and path.stat().st_size == entry["size"] and _hash(_read(path))[0] == entry["sha256"]
    )


def _pieces(bundle_dir: Path, rel: str, parts: int) -> list[Path]:
    base = bundle_dir / "files" / rel
    return [base] if parts == 1 else [base.with_name(f"{base.name}.part{i:03d}") for i in range(parts)]


def stage_files(
    store: Path, bundle_dir: Path, files: dict[str, dict[str, Any]], stage: Path, log: Callable[[str], None]
) -> None:
    """Verify every file into the staging area; a staged or installed file that hashes right is reused."""
    for rel, entry in files.items():
        staged = stage / rel
        for known in (staged, store / rel):
            if _matches(known, entry):
                if known != staged:
                    staged.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(known, staged)
                break
        else:
            pieces = _pieces(bundle_dir, rel, entry["parts"])
            missing = [p for p in pieces if not p.is_file()]
            if missing:
                raise UserError(f"{missing[0]}: missing from the bundle; nothing imported")
            staged.parent.mkdir(parents=True, exist_ok=True)
            partial = staged.with_name(staged.name + ".partial")
            digest, size = hashlib.sha256(), 0
            with partial.open("wb") as out:
                for piece in pieces:
                    for chunk in _read(piece):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if size != entry["size"] or digest.hexdigest() != entry["sha256"]:
                partial.unlink()
                raise UserError(
                    f"{pieces[0]}: does not match the manifest (size or sha256); nothing imported"
                )
            os.replace(partial, staged)
    key = store / "keys" / "site.gpg"
    if (
        "keys/site.gpg" in files
        and key.is_file()
        and key.read_bytes() != (stage / "keys/site.gpg").read_bytes()
    ):
        raise UserError(f"{key}: this store has another site key than the bundle's; nothing imported")
    log(f"{len(files)} site file(s) verified")


def install_files(store: Path, files: dict[str, dict[str, Any]], stage: Path) -> None:
    """Move staged files into the store: published trees first, Release files and the image catalog last,
    `current` at the end."""

    def order(rel: str) -> tuple[int, tuple[int, str]]:
        if rel == "packages/current":
            return (4, (0, rel))
        if rel.startswith("packages/aptly/public/site/"):
            return (0, tree_delta.ship_order(rel.removeprefix("packages/aptly/public/site/")))
        if rel.startswith("images/") and not rel.startswith("images/blobs/"):
            return (3, (0, rel))  # the image catalog after its blobs
        return (1 if rel.startswith(("wheels/", "keys/", "images/blobs/")) else 2, (0, rel))

    for rel in sorted(files, key=order):
        target = store / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage / rel, target)
