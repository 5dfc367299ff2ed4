"""Site package snapshots, each figure beside its anchor in the same run (sovereign mirror issue).

  sync:        `sovinfra mirror packages sync` of the site's package set (aptly: filter, download, snapshot,
               merge, sign, publish) vs `apt-get update` + `apt-get download` of the very same package
               versions from the same upstreams (time and bytes);
  incremental: what the mirror host is sent for a second snapshot that adds a few packages vs what it
               was sent for the first (`sovinfra.mirror.tree_delta`, the role's transfer; target <= 0.1x).
Usage: python3 benchmarks/package_snapshot.py [-i INVENTORY] [--add tmux,jq,strace]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sovinfra import paths
from sovinfra.inventory import model
from sovinfra.lab import config
from sovinfra.mirror import apt_plan, apt_snapshots, tree_delta


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def apt_download(upstreams: list[apt_plan.Upstream], keys: list[str], tmp: Path) -> tuple[float, int]:
    """apt itself fetching the same versions: private state, the same upstreams and keys."""
    sources = tmp / "sources.list.d"
    for d in (sources, tmp / "lists/partial", tmp / "cache/archives/partial", tmp / "prefs", tmp / "dl"):
        d.mkdir(parents=True, exist_ok=True)
    lines = []
    for u in upstreams:
        comps = " ".join(c.split("/")[-1] for c in u.components)
        lines += [f"deb [signed-by={u.keyring}] {u.url} {d} {comps}" for d in u.distributions]
    (sources / "site.list").write_text("\n".join(lines) + "\n")
    opts = [
        f"-oDir::State={tmp}",
        f"-oDir::Cache={tmp}/cache",
        f"-oDir::Etc::SourceList={tmp}/none.list",
        f"-oDir::Etc::SourceParts={sources}",
        f"-oDir::Etc::PreferencesParts={tmp}/prefs",
        "-oAPT::Sandbox::User=root",
        "-oAcquire::Languages=none",
    ]
    wanted = [f"{k.split('_')[0]}={k.split('_')[1]}" for k in keys]
    start = time.perf_counter()
    subprocess.run(["apt-get", "-q", *opts, "update"], check=True, capture_output=True)
    subprocess.run(
        ["apt-get", "-q", *opts, "download", *wanted], check=True, capture_output=True, cwd=tmp / "dl"
    )
    elapsed = time.perf_counter() - start
    return elapsed, tree_bytes(tmp / "dl") + tree_bytes(tmp / "lists")


def shipped(root: Path, have: dict[str, int], out: Path) -> int:
    """Bytes of the tar the role would send a host that has `have`."""
    listing = "".join(f"{p}\t{s}\n" for p, s in have.items())
    proc = subprocess.run(
        [sys.executable, "-m", "sovinfra.mirror.tree_delta", str(root), str(out)],
        input=listing,
        capture_output=True,
        text=True,
        check=True,
    )
    size = out.stat().st_size if json.loads(proc.stdout)["files"] else 0
    out.unlink(missing_ok=True)
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-i", "--inventory", default=str(paths.project_root() / "inventory" / "example"))
    parser.add_argument("--add", default="tmux,jq,strace", help="packages the second snapshot adds")
    args = parser.parse_args()
    roles = paths.project_root() / "roles"
    inv = model.load(Path(args.inventory))
    upstreams, arches = apt_plan.site_upstreams(inv, roles)
    # The OS package set: the anchor is apt itself, which has Debian's sources only (and NVIDIA's servers
    # are out of this machine's reach).
    upstreams = [u for u in upstreams if not u.flat]
    need = sorted(set(apt_plan.needed_packages(inv, roles)) | set(config.BASE_PACKAGES))
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp_name:
        tmp = Path(tmp_name)
        store = tmp / "store"
        start = time.perf_counter()
        first = apt_snapshots.sync(store, upstreams, need, arches, log=lambda _m: None)
        sync_s = time.perf_counter() - start
        aptly_bytes = tree_bytes(store / "packages" / "aptly" / "pool") + tree_bytes(
            store / "packages" / "aptly" / "db"
        )
        record = json.loads((store / "packages" / "snapshots" / f"{first.id}.json").read_text())
        keys = apt_snapshots.packages_of(apt_snapshots.Aptly(store), f"{apt_snapshots.PREFIX}-{first.id}")
        apt_s, apt_bytes = apt_download(upstreams, keys, tmp / "apt")
        root = apt_snapshots.published_tree(store)
        first_tree = tree_delta.listing(root)
        first_ship = shipped(root, {}, tmp / "d.tar")
        time.sleep(1.1)
        second = apt_snapshots.sync(store, upstreams, need + args.add.split(","), arches, log=lambda _m: None)
        second_ship = shipped(root, first_tree, tmp / "d.tar")
    print(f"site need: {len(record['needed'])} names -> {first.packages} packages with dependencies")
    print("| what | time s | bytes | vs anchor |")
    print("| --- | --- | --- | --- |")
    print(f"| apt-get update + download (anchor) | {apt_s:.1f} | {apt_bytes / 1e6:.1f} MB | 1.00x |")
    print(
        f"| mirror packages sync | {sync_s:.1f} | {aptly_bytes / 1e6:.1f} MB | "
        f"{sync_s / apt_s:.2f}x time, {aptly_bytes / apt_bytes:.2f}x bytes |"
    )
    print(f"| ship first snapshot {first.id} (anchor) | | {first_ship / 1e6:.1f} MB | 1.00x |")
    print(
        f"| ship second snapshot {second.id} (+{args.add}, {second.packages} packages) | | "
        f"{second_ship / 1e6:.2f} MB | {second_ship / first_ship:.3f}x (target <= 0.1x) |"
    )


if __name__ == "__main__":
    main()
