"""Ship a published package tree incrementally: what a host lacks goes into one tar, in a safe order.

The host lists what it has (`find -printf '%P\\t%s\\n'`, on stdin); the tar holds only files it lacks
or holds at another size. Published files never change in place (a snapshot id is a new directory,
pool files are named by version), so path + size is the identity. Order inside the tar: pool files
first, then each distribution's indexes, its Release files last: a client that could see a new
distribution mid-extraction finds no InRelease yet, and nothing that existed changes.

  python -m sovinfra.mirror.tree_delta ROOT OUT.tar < host-listing   -> JSON {files, bytes, stale}
"""

from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path

RELEASE_FILES = ("Release", "Release.gpg", "InRelease")


def parse_listing(text: str) -> dict[str, int]:
    have: dict[str, int] = {}
    for line in text.splitlines():
        path, sep, size = line.rpartition("\t")
        if sep and size.isdigit():
            have[path] = int(size)
    return have


def ship_order(path: str) -> tuple[int, str]:
    """pool/ < other files < Release files (each group by path)."""
    if path.startswith("pool/"):
        return (0, path)
    return (2 if path.rsplit("/", 1)[-1] in RELEASE_FILES else 1, path)


def delta(source: dict[str, int], have: dict[str, int]) -> tuple[list[str], list[str]]:
    """(paths to ship in order, paths the host has that the source no longer has)."""
    ship = sorted((p for p, size in source.items() if have.get(p) != size), key=ship_order)
    stale = sorted(p for p in have if p not in source)
    return ship, stale


def listing(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def main(argv: list[str]) -> int:
    root, out = Path(argv[0]), Path(argv[1])
    ship, stale = delta(listing(root), parse_listing(sys.stdin.read()))
    total = 0
    if ship:
        with tarfile.open(out, "w") as tar:
            for rel in ship:
                info = tar.gettarinfo(str(root / rel), arcname=rel)
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mode = 0o644
                with (root / rel).open("rb") as fh:
                    tar.addfile(info, fh)
                total += info.size
    print(json.dumps({"files": len(ship), "bytes": total, "stale": stale, "tar": str(out) if ship else ""}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
