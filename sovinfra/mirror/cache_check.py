"""Is a node's cached model still what was verified? Checked before every engine start.

Standard library only: it runs on the node, in the agent's venv, as the inference units' ExecStartPre.
`python -m sovinfra.mirror.cache_check SNAPSHOT_DIR [--full]`: exit 0 when every file of the verified
manifest (`.sovinfra/ready-<commit>`, written by `pull`) is in place and unchanged; exit 1 naming each
file that is not, so the engine never opens it and its port stays closed.

Cheap by default: the pull records each blob's (size, mtime, ctime, inode) once its sha256 matched
(`.sovinfra/stat-<commit>`). A blob whose record still matches is trusted; any write to it moves its
ctime (which no user can set back), so a changed blob is re-hashed and judged. `--full` re-hashes all.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from sovinfra import atomic
from sovinfra.mirror.store import hash_file

Signature = list[int]


def signature(st: os.stat_result) -> Signature:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def marker_dir(repo_dir: Path) -> Path:
    return repo_dir / ".sovinfra"


def manifest(repo_dir: Path, commit: str) -> dict[str, str] | None:
    """{path: sha256} of a verified commit (None: never verified on this node)."""
    try:
        data = json.loads((marker_dir(repo_dir) / f"ready-{commit}").read_text())
    except (OSError, ValueError):
        return None
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else None


def load_stats(repo_dir: Path, commit: str) -> dict[str, Signature]:
    try:
        data = json.loads((marker_dir(repo_dir) / f"stat-{commit}").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_stats(repo_dir: Path, commit: str, stats: dict[str, Signature]) -> None:
    atomic.write_text(marker_dir(repo_dir) / f"stat-{commit}", json.dumps(stats, indent=1, sort_keys=True))


def record(repo_dir: Path, commit: str, blobs: list[Path]) -> None:
    """After a pull verified these blobs: their signatures are the trusted state."""
    save_stats(repo_dir, commit, {b.name: signature(b.stat()) for b in blobs})


def unchanged(stats: dict[str, Signature], blob: Path) -> bool:
    try:
        return stats.get(blob.name) == signature(blob.stat())
    except OSError:
        return False


def check(snapshot: Path, full: bool = False) -> list[str]:
    """Problems with a verified snapshot directory (models--org--name/snapshots/<commit>); [] when sound.

    Blobs re-hashed and found sound get fresh signatures (when the caller may write them).
    """
    repo_dir, commit = snapshot.parent.parent, snapshot.name
    files = manifest(repo_dir, commit)
    if files is None:
        return [f"{snapshot}: no verified manifest (.sovinfra/ready-{commit}); converge pulls it"]
    blobs = (repo_dir / "blobs").resolve()
    stats = load_stats(repo_dir, commit)
    problems: list[str] = []
    refreshed = False
    for path, sha256 in sorted(files.items()):
        link = snapshot / path
        blob = link.resolve()
        if blob.parent != blobs or not blob.is_file():
            problems.append(f"{link}: missing (expected sha256 {sha256})")
            continue
        if not full and unchanged(stats, blob):
            continue
        found = hash_file(blob)
        if found != sha256:
            problems.append(f"{link}: sha256 {found} does not match the verified {sha256}")
            continue
        stats[blob.name] = signature(blob.stat())
        refreshed = True
    if refreshed and not problems and os.access(marker_dir(repo_dir), os.W_OK):
        save_stats(repo_dir, commit, stats)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sovinfra.mirror.cache_check", description=__doc__)
    parser.add_argument("snapshot", type=Path, help="the model's snapshots/<commit> directory")
    parser.add_argument("--full", action="store_true", help="re-hash every file, not only changed ones")
    args = parser.parse_args(argv)
    problems = check(args.snapshot, args.full)
    for problem in problems:
        print(f"model cache: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
