"""The lab's container image, built here with no registry: an OCI archive of Debian's own files.

No registry is reachable from this machine or the lab, so the image a lab GPU node runs is made from the
lab's Debian base: the files of a few packages (glibc and a minimal Python 3, what the stand-in
nvidia-smi needs once the CDI spec has mounted it in), one layer per group of packages, written
reproducibly (sorted entries, fixed times and owners, gzip without a timestamp): the same base gives the
same digests on every build, so a digest in a test's inventory stays true.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

from sovinfra.errors import UserError

# One layer per group: the C library first, then the interpreter, then its standard library.
LAYERS = (
    ("libc6", "libffi8", "zlib1g", "libexpat1"),
    ("libpython3.11-minimal", "python3.11-minimal", "python3-minimal"),
    ("libpython3.11-stdlib",),
)
# merged-/usr: these are symlinks in Debian 12's root and must be in the image as such.
ROOT_LINKS = ("bin", "sbin", "lib", "lib64")
EPOCH = 0
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _package_paths(base: Path, package: str) -> list[str]:
    info = base / "var/lib/dpkg/info"
    for name in (f"{package}:amd64.list", f"{package}.list"):
        if (info / name).is_file():
            return [line for line in (info / name).read_text().splitlines() if line not in ("", "/.")]
    raise UserError(f"{base}: package {package} is not installed in the lab base")


def _resolve(base: Path, path: str) -> str:
    """The path as stored: its directory's symlinks (/lib -> usr/lib) resolved inside the base."""
    full = base / path.lstrip("/")
    parent = os.path.relpath(os.path.realpath(full.parent), base.resolve())
    return os.path.normpath(os.path.join(parent, full.name))


def _tar_entry(tar: tarfile.TarFile, base: Path, rel: str) -> None:
    info = tar.gettarinfo(str(base / rel), arcname=rel)
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = EPOCH
    if info.isreg():
        with (base / rel).open("rb") as fh:
            tar.addfile(info, fh)
    elif info.isdir() or info.issym():
        tar.addfile(info)


def tar_layer(raw: bytes) -> tuple[bytes, str]:
    """A layer from an uncompressed tar: gzipped without a timestamp, and its diff id."""
    return gzip.compress(raw, mtime=EPOCH), hashlib.sha256(raw).hexdigest()


def layer(base: Path, packages: tuple[str, ...], with_root_links: bool) -> tuple[bytes, str]:
    """One gzipped tar layer of the packages' files (parents included), byte-for-byte reproducible, and
    its diff id (the sha256 of the uncompressed tar)."""
    entries: set[str] = set()
    for package in packages:
        for path in _package_paths(base, package):
            rel = _resolve(base, path)
            if rel in (".", "") or not os.path.lexists(base / rel):
                continue
            entries.add(rel)
            parts = rel.split("/")[:-1]
            entries.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    if with_root_links:
        entries.update(link for link in ROOT_LINKS if (base / link).is_symlink())
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in sorted(entries):
            _tar_entry(tar, base, rel)
    return tar_layer(raw.getvalue())


def _descriptor(media: str, data: bytes) -> dict[str, object]:
    return {"mediaType": media, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}


def build_archive(base: Path, out: Path, ref_name: str) -> str:
    """Write the lab image as an OCI archive; return its manifest digest."""
    return write_archive(
        [layer(base, packages, with_root_links=i == 0) for i, packages in enumerate(LAYERS)], out, ref_name
    )


def write_archive(layers: list[tuple[bytes, str]], out: Path, ref_name: str) -> str:
    """An OCI archive (oci-layout, index.json, blobs) of gzipped layers and their diff ids, for linux/amd64;
    returns its manifest digest. Written aside, then renamed."""
    blobs: dict[str, bytes] = {}
    descriptors, diff_ids = [], []
    for data, diff_id in layers:
        descriptors.append(_descriptor(MEDIA_LAYER, data))
        diff_ids.append("sha256:" + diff_id)
        blobs[str(descriptors[-1]["digest"])] = data
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_descriptor = _descriptor(MEDIA_CONFIG, config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config_descriptor,
        "layers": descriptors,
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    blobs[str(config_descriptor["digest"])] = config_bytes
    top = _descriptor(MEDIA_MANIFEST, manifest_bytes)
    blobs[str(top["digest"])] = manifest_bytes
    top["annotations"] = {"org.opencontainers.image.ref.name": ref_name}
    top["platform"] = {"architecture": "amd64", "os": "linux"}
    index = {"schemaVersion": 2, "manifests": [top]}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), EPOCH, 0o644
            tar.addfile(info, io.BytesIO(data))

        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add("index.json", json.dumps(index, sort_keys=True).encode())
        for digest in sorted(blobs):
            add("blobs/sha256/" + digest.removeprefix("sha256:"), blobs[digest])
    os.replace(tmp, out)
    return str(top["digest"])
