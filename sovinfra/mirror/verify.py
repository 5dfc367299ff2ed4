"""Re-hashing everything the mirror's commits reference (`sovinfra mirror verify`)."""

from __future__ import annotations

from dataclasses import dataclass

from sovinfra.mirror.store import Store, hash_file


@dataclass(frozen=True)
class Mismatch:
    sha256: str
    problem: str  # missing | corrupt
    used_by: tuple[str, ...]  # repo@commit:path


def verify(store: Store) -> tuple[int, list[Mismatch]]:
    """(blobs checked, mismatches). Each blob is hashed once, however many commits share it."""
    used: dict[str, list[str]] = {}
    for repo in store.repos():
        for commit in store.commits(repo):
            for f in store.commit(repo, commit).files:
                used.setdefault(f.sha256, []).append(f"{repo}@{commit[:12]}:{f.path}")
    bad = []
    for sha256, users in sorted(used.items()):
        path = store.blob_path(sha256)
        if not path.is_file():
            bad.append(Mismatch(sha256, "missing", tuple(users)))
        elif hash_file(path) != sha256:
            bad.append(Mismatch(sha256, "corrupt", tuple(users)))
    return len(used), bad
