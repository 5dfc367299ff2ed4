"""Pruning a node's model cache: what no service declares goes, what any declares stays."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sovinfra.mirror import cache_prune

A1, A2, B1 = "a" * 40, "b" * 40, "c" * 40


def revision(cache: Path, repo: str, commit: str, files: dict[str, bytes], ref: str | None = None) -> None:
    """A revision as `mirror pull` leaves it: blobs, snapshot symlinks, markers, and a ref for a branch."""
    base = cache / ("models--" + repo.replace("/", "--"))
    for name, data in files.items():
        blob = base / "blobs" / f"etag-{data.decode()}"
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = base / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (base / ".sovinfra").mkdir(exist_ok=True)
    for marker in (f"ready-{commit}", f"stat-{commit}"):
        (base / ".sovinfra" / marker).write_text("{}")
    if ref:
        (base / "refs").mkdir(exist_ok=True)
        (base / "refs" / ref).write_text(commit)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    cache = tmp_path / "hf-cache"
    # org/a at two revisions sharing the tokenizer; org/b at one; a dataset sovinfra never wrote.
    revision(cache, "org/a", A1, {"model.gguf": b"weights-v1", "tokenizer.json": b"tok"})
    revision(cache, "org/a", A2, {"model.gguf": b"weights-v2", "tokenizer.json": b"tok"}, ref="main")
    revision(cache, "org/b", B1, {"model.gguf": b"other"})
    (cache / "datasets--org--d").mkdir()
    return cache


def test_an_old_revision_and_an_undeclared_model_go_shared_blobs_stay(cache: Path) -> None:
    gone, size = cache_prune.unused(cache, [("org/a", A2)])
    assert gone == [
        "models--org--a/snapshots/" + A1,
        "models--org--a/.sovinfra/ready-" + A1,
        "models--org--a/.sovinfra/stat-" + A1,
        "models--org--a/blobs/etag-weights-v1",  # the tokenizer's blob is A2's too: it stays
        "models--org--b",
    ]
    assert size == sum(cache_prune._size(cache / rel) for rel in gone) > len(b"weights-v1")
    # The datasets folder is not sovinfra's; A2 and its ref are kept: nothing of theirs is listed.
    assert not [g for g in gone if "datasets" in g or "refs" in g or A2 in g]


def test_a_branch_keeps_the_commit_its_ref_names_and_two_declarations_keep_both(cache: Path) -> None:
    gone, _ = cache_prune.unused(cache, [("org/a", "main"), ("org/b", B1)])
    assert gone == [
        "models--org--a/snapshots/" + A1,
        "models--org--a/.sovinfra/ready-" + A1,
        "models--org--a/.sovinfra/stat-" + A1,
        "models--org--a/blobs/etag-weights-v1",
    ]
    assert cache_prune.unused(cache, [("org/a", A1), ("org/a", A2), ("org/b", B1)]) == ([], 0)
    assert cache_prune.unused(cache, [])[0] == ["models--org--a", "models--org--b"]


def test_the_command_line_reports_json_and_refuses_bad_keeps(
    cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cache_prune.main([str(cache), "--keep", f"org/a@{A2}", "--keep", f"org/b@{B1}"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["unused"][0] == "models--org--a/snapshots/" + A1 and report["bytes"] > 0
    assert (cache / "models--org--a" / "snapshots" / A1).is_dir()  # it only says
    with pytest.raises(SystemExit):
        cache_prune.main([str(cache), "--keep", "../etc@main"])
    assert "is not a repo id" in capsys.readouterr().err
