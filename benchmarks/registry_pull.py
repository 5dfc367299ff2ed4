"""A GPU node pulling a multi-layer image from the site registry vs the same bytes with curl from the
mirror host's nginx, in the same run (GPU containers issue; target: >= 0.8x the anchor's throughput).

A fresh 1-node air-gapped lab is converged with an image made here (LAYERS layers of incompressible
data, MIB MiB each, so neither side can win by compression) in the store; the mirror's converge pushes
it. Timed on gpu1, each round from an empty content store:
  registry: `ctr content fetch` by digest with the site's hosts.toml (containerd's own fetch: every blob
            checked against its digest; unpacking is not download and is left out);
  anchor:   `curl -o` of the same blob files, served by the mirror host's nginx from the registry's disk
            (beside it, for where time goes: curl of the same blobs by the registry's own URLs).
Run as root with no lab up:  python3 benchmarks/registry_pull.py [--layers 4] [--mib 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lab_cli import invoke

from sovinfra import paths
from sovinfra.cli import cli
from sovinfra.lab import image, manager

NAME = "docker.io/sovinfra/bench-layers"
BENCH_PORT = 8099


def layer(mib: int) -> tuple[bytes, str]:
    raw = io.BytesIO()
    data = os.urandom(mib << 20)
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("payload.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return image.tar_layer(raw.getvalue())


def ssh(host: str, command: str) -> str:
    proc = subprocess.run([*manager.ssh_argv(host), command], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{host}: {command}\n{proc.stderr}")
    return proc.stdout


def timed(host: str, command: str) -> float:
    start = time.perf_counter()
    ssh(host, command)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if manager.is_up():
        raise SystemExit("a lab is up: this benchmark brings up and tears down its own")
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "bench.tar"
        digest = image.write_archive([layer(args.mib) for _ in range(args.layers)], archive, "bench")
        try:
            manager.up(1, air_gapped=True, log=lambda _m: None)
            inventory = str(paths.lab_inventory_dir())
            invoke("lab", "model")
            invoke("mirror", "packages", "sync", "-i", inventory)
            invoke("mirror", "images", "add", str(archive), "--name", f"{NAME}:bench")
            invoke("apply", "-i", inventory, "--json")
            run(digest, args.rounds)
        finally:
            CliRunner().invoke(cli, ["mirror", "images", "rm", NAME])
            manager.down(log=lambda _m: None)


def run(digest: str, rounds: int) -> None:
    mirror = manager.state.load().hosts["mirror1"].address
    manifest = json.loads(ssh("mirror1", f"cat /var/lib/sovinfra/mirror/images/blobs/sha256/{digest[7:]}"))
    blobs = [manifest["config"]["digest"]] + [entry["digest"] for entry in manifest["layers"]]
    total = sum(entry["size"] for entry in manifest["layers"]) + manifest["config"]["size"]
    # The anchor: the mirror host's nginx serving the registry's own blob files, plain static.
    root = "/var/lib/docker-registry/docker/registry/v2/blobs"
    conf = f"server {{ listen {mirror}:{BENCH_PORT}; root {root}; sendfile on; }}\n"
    ssh("mirror1", f"printf '%s' '{conf}' > /etc/nginx/sites-enabled/zz-bench.conf && systemctl reload nginx")
    urls = [f"http://{mirror}:{BENCH_PORT}/sha256/{b[7:9]}/{b[7:]}/data" for b in blobs]
    curl = "mkdir -p /var/tmp/bench && cd /var/tmp/bench && " + " && ".join(
        f"curl -fsS -o {b[7:]} {u}" for b, u in zip(blobs, urls, strict=True)
    )
    site = [f"http://{mirror}:5000/v2/{NAME}/blobs/{b}" for b in blobs]
    curl_site = "mkdir -p /var/tmp/bench && cd /var/tmp/bench && " + " && ".join(
        f"curl -fsS -o {b[7:]} {u}" for b, u in zip(blobs, site, strict=True)
    )
    ref = f"{NAME}@{digest}"
    fetch = f"ctr -n bench content fetch --hosts-dir /etc/containerd/certs.d {ref} >/dev/null"
    clean = (
        "rm -rf /var/tmp/bench; ctr -n bench images rm "
        + ref
        + " >/dev/null 2>&1; "
        + ("ctr -n bench content ls -q | xargs -r ctr -n bench content rm >/dev/null; true")
    )
    registry_s, anchor_s, site_s = [], [], []
    for _ in range(rounds):
        ssh("gpu1", clean)
        registry_s.append(timed("gpu1", fetch))
        ssh("gpu1", clean)
        anchor_s.append(timed("gpu1", curl))
        ssh("gpu1", clean)
        site_s.append(timed("gpu1", curl_site))
    ssh("gpu1", clean)
    reg, anchor, by_url = (statistics.median(x) for x in (registry_s, anchor_s, site_s))
    mb = total / 1e6
    head = f"{len(blobs) - 1} layers, {mb:.0f} MB, gpu1 <- mirror1"
    print(f"| {head} | s (median of {rounds}) | MB/s | vs anchor |")
    print("| --- | --- | --- | --- |")
    print(f"| curl from the mirror's nginx (anchor) | {anchor:.2f} | {mb / anchor:.0f} | 1.00x |")
    print(f"| curl of the registry's blob URLs | {by_url:.2f} | {mb / by_url:.0f} | {anchor / by_url:.2f}x |")
    print(f"| ctr content fetch from the site registry | {reg:.2f} | {mb / reg:.0f} | {anchor / reg:.2f}x |")


if __name__ == "__main__":
    main()
