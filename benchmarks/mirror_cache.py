"""Rack cache: bytes the mirror serves when N nodes pull one commit at once, through one cache (roles/
mirror_cache's nginx config) vs straight from the mirror, each as a multiple of the model's size (the
anchor: one copy). Target: 1.0x with the cache whatever N (vs N x without).

The mirror is `sovinfra mirror serve --dev` (the mirror's own nginx config), the nodes are
`sovinfra mirror pull` (every byte sha256-verified) in threads, each into its own cache directory.
Usage: python3 benchmarks/mirror_cache.py [--mib 256] [--nodes 1,2,4,8]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sovinfra.mirror import importer, publish, pull, serve
from sovinfra.mirror.store import Store
from tests.rack_cache import RackCache
from tests.tiny_model import make_tiny_model

REPO = "bench/model"
# nginx's combined log: the request line, the status, then the body bytes sent.
LINE = re.compile(r'"GET (?P<path>\S+) HTTP/1\.[01]" (?P<status>\d{3}) (?P<bytes>\d+)')


def resolve_bytes(log: Path, offset: int) -> int:
    """Body bytes the mirror sent for files (resolve URLs) since `offset` of its access log."""
    with log.open() as fh:
        fh.seek(offset)
        return sum(int(m["bytes"]) for m in LINE.finditer(fh.read()) if "/resolve/" in m["path"])


def pull_at_once(mirror: str, commit: str, hubs: list[Path], via: str) -> float:
    errors: list[BaseException] = []

    def node(hub: Path) -> None:
        try:
            pull.pull(mirror, REPO, commit, hub, streams=4, via=via)
        except BaseException as exc:  # re-raised below, in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=node, args=(hub,)) for hub in hubs]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=256, help="size of the model's weights")
    parser.add_argument("--nodes", default="1,2,4,8", help="node counts to measure")
    args = parser.parse_args()
    counts = [int(n) for n in args.nodes.split(",")]
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp_name:
        tmp = Path(tmp_name)
        model = make_tiny_model(tmp / "model", extras=False)
        with (model / "model.safetensors").open("wb") as fh:  # random: incompressible
            for _ in range(args.mib):
                fh.write(os.urandom(2**20))
        store = Store(tmp / "store")
        commit = importer.import_folder(store, model, REPO, "main", False, lambda _m: None)
        size = sum(f.size for f in store.commit(REPO, commit).files)
        print(f"model: {size / 2**20:.1f} MiB in {len(store.commit(REPO, commit).files)} files")
        print("| nodes | mirror bytes, direct | via one cache | wall direct s | wall via cache s |")
        print("| --- | --- | --- | --- | --- |")
        with serve.DevServer(publish.publish(store), store.root / "blobs" / "sha256") as mirror:
            log = mirror.prefix / "access.log"
            for n in counts:
                figures = []
                for mode in ("direct", "cache"):
                    cache = RackCache(f"127.0.0.1:{mirror.port}") if mode == "cache" else None
                    try:
                        hubs = [tmp / f"{mode}-{n}-{i}" for i in range(n)]
                        offset = log.stat().st_size
                        wall = pull_at_once(mirror.url, commit, hubs, cache.url if cache else "")
                        assert all(pull.is_ready(h, REPO, commit) for h in hubs)
                        figures.append((resolve_bytes(log, offset) / size, wall))
                    finally:
                        if cache:
                            cache.stop()
                (direct, direct_s), (cached, cached_s) = figures
                print(f"| {n} | {direct:.2f}x | **{cached:.2f}x** | {direct_s:.2f} | {cached_s:.2f} |")
    print("Target: the cache column 1.00x for every N (a commit's bytes leave the mirror once per cache).")


if __name__ == "__main__":
    main()
