"""The check every inference start runs on its cached model: trusted while untouched, judged once written."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sovinfra.mirror import cache_check

COMMIT = "c" * 40


def cached_model(root: Path, files: dict[str, bytes]) -> Path:
    """A Hugging Face cache entry as `sovinfra mirror pull` leaves it: blobs, links, manifest, record."""
    repo = root / "models--org--m"
    blobs, snapshot = repo / "blobs", repo / "snapshots" / COMMIT
    blobs.mkdir(parents=True)
    manifest = {}
    for path, data in files.items():
        sha = hashlib.sha256(data).hexdigest()
        (blobs / sha).write_bytes(data)
        link = snapshot / path
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blobs / sha, link.parent))
        manifest[path] = sha
    (repo / ".sovinfra").mkdir()
    (repo / ".sovinfra" / f"ready-{COMMIT}").write_text(json.dumps(manifest))
    cache_check.record(repo, COMMIT, sorted(blobs.iterdir()))
    return snapshot


def flip(path: Path, offset: int) -> None:
    """One byte changed in place, size and mtime kept: what bit rot or a careless edit leaves."""
    st = path.stat()
    with path.open("r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x01]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_untouched_model_passes_without_reading_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snapshot = cached_model(tmp_path, {"model.gguf": b"w" * 5000, "cfg/config.json": b"{}"})

    def no_hash(_p: Path) -> str:
        raise AssertionError("an unchanged file was re-hashed")

    monkeypatch.setattr(cache_check, "hash_file", no_hash)
    assert cache_check.check(snapshot) == []


def test_flipped_byte_with_mtime_kept_is_named(tmp_path: Path) -> None:
    snapshot = cached_model(tmp_path, {"model.gguf": b"w" * 5000, "config.json": b"{}"})
    flip(snapshot / "model.gguf", 4096)
    problems = cache_check.check(snapshot)
    assert len(problems) == 1 and "model.gguf: sha256" in problems[0] and "does not match" in problems[0]
    assert cache_check.check(snapshot) == problems  # still refused: a bad file never becomes trusted


def test_missing_file_and_missing_manifest(tmp_path: Path) -> None:
    snapshot = cached_model(tmp_path, {"model.gguf": b"abc"})
    (snapshot / "model.gguf").resolve().unlink()
    assert ["missing" in p for p in cache_check.check(snapshot)] == [True]
    (snapshot.parent.parent / ".sovinfra" / f"ready-{COMMIT}").unlink()
    assert "no verified manifest" in cache_check.check(snapshot)[0]


def test_link_pointing_outside_the_blobs_is_refused(tmp_path: Path) -> None:
    snapshot = cached_model(tmp_path, {"model.gguf": b"abc"})
    outside = tmp_path / "elsewhere"
    outside.write_bytes(b"abc")
    (snapshot / "model.gguf").unlink()
    (snapshot / "model.gguf").symlink_to(outside)
    assert "missing" in cache_check.check(snapshot)[0]


def test_rewritten_but_sound_file_is_rehashed_once_then_trusted(tmp_path: Path) -> None:
    snapshot = cached_model(tmp_path, {"model.gguf": b"w" * 100})
    blob = (snapshot / "model.gguf").resolve()
    blob.write_bytes(b"w" * 100)  # same content written again (a restore): ctime moves
    repo = snapshot.parent.parent
    assert not cache_check.unchanged(cache_check.load_stats(repo, COMMIT), blob)
    assert cache_check.check(snapshot) == []
    assert cache_check.unchanged(cache_check.load_stats(repo, COMMIT), blob)  # the record is refreshed


def test_full_rehashes_even_an_untouched_record(tmp_path: Path) -> None:
    snapshot = cached_model(tmp_path, {"model.gguf": b"w" * 100})
    blob = (snapshot / "model.gguf").resolve()
    repo = snapshot.parent.parent
    flip(blob, 3)
    cache_check.record(repo, COMMIT, [blob])  # someone re-recorded the tampered state
    assert cache_check.check(snapshot) == []
    assert "does not match" in cache_check.check(snapshot, full=True)[0]


def test_command_exits_1_naming_the_file(tmp_path: Path) -> None:
    snapshot = cached_model(tmp_path, {"model.gguf": b"w" * 100})
    command = [sys.executable, "-m", "sovinfra.mirror.cache_check", str(snapshot)]
    assert subprocess.run(command, capture_output=True).returncode == 0
    flip((snapshot / "model.gguf").resolve(), 50)
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 1 and "model.gguf" in done.stderr and "Traceback" not in done.stderr
