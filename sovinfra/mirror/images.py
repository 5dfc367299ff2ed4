"""The site's container images: held in the store by digest, pushed to the mirror host's registry as they are.

Layout under <store>/images (an OCI image layout, so skopeo reads it directly):
  records.json        the catalog: every image's name, tag, index digest and per-platform digests
  index.json          written from records.json: one entry per image, named by its digest's hex
  oci-layout          the layout's version marker
  blobs/sha256/<hex>  manifests, configs and layers, shared between images
  tmp/                unfinished adds (temporary directories, removed when an add ends)
An image enters from an OCI or docker archive or a registry the connected side reaches, copied with
`skopeo copy --all --preserve-digests` (every platform, manifests byte for byte, so the index digest the
upstream published is the one the site serves), every blob it references hashed before it is recorded.
The records are written last: an add that fails leaves nothing that names it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sovinfra import atomic
from sovinfra.errors import UserError
from sovinfra.mirror import image_ref
from sovinfra.mirror.store import hash_file

INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
ACCEPT = ", ".join(INDEX_TYPES + MANIFEST_TYPES)


@dataclass(frozen=True)
class Image:
    name: str  # registry/repository, e.g. docker.io/library/busybox
    tag: str
    digest: str  # what a reference pins: the index digest, or the manifest's for a single platform
    platforms: dict[str, str] = field(default_factory=dict)  # os/arch[/variant] -> manifest digest
    source: str = ""

    @property
    def reference(self) -> str:
        return f"{self.name}@{self.digest}"

    @property
    def registry_tag(self) -> str:
        """The tag it is pushed under (registries list tags, not digests): its own, or one from its digest."""
        return self.tag or "sha256-" + self.digest.removeprefix("sha256:")


def images_dir(store_root: Path) -> Path:
    return store_root / "images"


def _blob(root: Path, digest: str) -> Path:
    return root / "blobs" / "sha256" / digest.removeprefix("sha256:")


def records(store_root: Path) -> list[Image]:
    path = images_dir(store_root) / "records.json"
    if not path.is_file():
        return []
    try:
        return [Image(**entry) for entry in json.loads(path.read_text())["images"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a sovinfra image catalog ({exc})") from exc


def _write_records(store_root: Path, images: list[Image]) -> None:
    root = images_dir(store_root)
    ordered = sorted(images, key=lambda i: (i.name, i.tag, i.digest))
    entries = []
    for image in ordered:
        media = json.loads(_blob(root, image.digest).read_bytes()).get("mediaType", MANIFEST_TYPES[0])
        size = _blob(root, image.digest).stat().st_size
        name = {"org.opencontainers.image.ref.name": image.digest.removeprefix("sha256:")}
        entries.append({"mediaType": media, "digest": image.digest, "size": size, "annotations": name})
    atomic.write_text(root / "oci-layout", '{"imageLayoutVersion": "1.0.0"}\n')
    # The catalog first, then the layout's index: a reader of either never sees an image without blobs.
    doc = {"images": [asdict(i) for i in ordered]}
    atomic.write_text(root / "records.json", json.dumps(doc, indent=1, sort_keys=True) + "\n")
    atomic.write_text(
        root / "index.json", json.dumps({"schemaVersion": 2, "manifests": entries}, indent=1) + "\n"
    )


def reachable(root: Path, digest: str, where: str) -> set[str]:
    """Every blob the image references (index, manifests, configs, layers), each one present and hashing
    to its name; else UserError naming the image and the blob."""
    seen: set[str] = set()

    def check(blob: str) -> Path:
        path = _blob(root, blob)
        if not path.is_file():
            raise UserError(f"{where}: blob {blob} is missing")
        if "sha256:" + hash_file(path) != blob:
            raise UserError(f"{where}: blob {blob} does not match its digest")
        seen.add(blob)
        return path

    def walk(manifest: str) -> None:
        doc = json.loads(check(manifest).read_bytes())
        for entry in doc.get("manifests", []):
            walk(entry["digest"])
        for entry in [doc["config"]] if "config" in doc else []:
            check(entry["digest"])
        for entry in doc.get("layers", []):
            check(entry["digest"])

    walk(digest)
    return seen


def platforms(root: Path, digest: str) -> dict[str, str]:
    doc = json.loads(_blob(root, digest).read_bytes())
    if "manifests" in doc:
        out = {}
        for entry in doc["manifests"]:
            p = entry.get("platform", {})
            key = "/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)
            out[key or "unknown"] = entry["digest"]
        return out
    config = json.loads(_blob(root, doc["config"]["digest"]).read_bytes())
    key = "/".join(x for x in (config.get("os"), config.get("architecture"), config.get("variant")) if x)
    return {key or "unknown": digest}


def _archive_kind(path: Path) -> tuple[str, str]:
    """(skopeo transport, the name the archive gives itself or "") of an OCI or docker archive."""
    try:
        with tarfile.open(path) as tar:
            members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
            if "oci-layout" in members and "index.json" in members:
                index = json.load(tar.extractfile(members["index.json"]))  # type: ignore[arg-type]
                notes = [m.get("annotations", {}) for m in index.get("manifests", [])]
                names = [
                    n.get("io.containerd.image.name") or n.get("org.opencontainers.image.ref.name", "")
                    for n in notes
                ]
                return "oci-archive", next((n for n in names if "/" in n), "")
            if "manifest.json" in members:
                manifest = json.load(tar.extractfile(members["manifest.json"]))  # type: ignore[arg-type]
                tags = [t for entry in manifest for t in entry.get("RepoTags") or []]
                return "docker-archive", tags[0] if len(tags) == 1 else ""
    except (tarfile.TarError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{path}: not a readable OCI or docker archive ({exc})") from exc
    raise UserError(
        f"{path}: neither an OCI archive (oci-layout, index.json) nor a docker archive (manifest.json)"
    )


def source_of(source: str, name: str | None) -> tuple[str, image_ref.ImageRef]:
    """The skopeo source and the reference the image will have, for a path or a registry reference."""
    path = Path(source)
    if path.exists():
        if not path.is_file():
            raise UserError(f"{source}: not an archive file")
        transport, own = _archive_kind(path)
        label = name or own
        if not label:
            raise UserError(
                f"{source}: the archive does not name its image; give one with --name REGISTRY/REPO:TAG"
            )
        skopeo_source = f"{transport}:{path.resolve()}"
    else:
        if "/" in source and source.startswith((".", "/")):
            raise UserError(f"{source}: no such archive")
        label = name or source
        skopeo_source = f"docker://{source}"
    try:
        ref = image_ref.parse(label)
    except ValueError as exc:
        raise UserError(f"{source}: {exc}") from exc
    return skopeo_source, ref


def _skopeo(args: list[str], where: str) -> str:
    try:
        proc = subprocess.run(["skopeo", *args], capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise UserError("skopeo is not installed (Debian: apt install skopeo)") from exc
    if proc.returncode != 0:
        raise UserError(f"{where}: skopeo {args[0]} failed: {proc.stderr.strip()[-1500:]}")
    return proc.stdout


def add(store_root: Path, source: str, name: str | None, log: Callable[[str], None]) -> Image:
    """Copy one image into the store with its digests preserved; record it once every blob verified."""
    skopeo_source, ref = source_of(source, name)
    root = images_dir(store_root)
    (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (root / "tmp").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root / "tmp") as tmp:
        log(f"copying {source} ...")
        _skopeo(
            ["copy", "--quiet", "--all", "--preserve-digests", skopeo_source, f"oci:{tmp}:incoming"], source
        )
        index = json.loads((Path(tmp) / "index.json").read_text())
        digest = index["manifests"][0]["digest"]
        if ref.digest and ref.digest != digest:
            raise UserError(f"{source}: copied image has digest {digest}, not the {ref.digest} asked for")
        blobs = reachable(Path(tmp), digest, source)
        for blob in sorted(blobs):
            target = _blob(root, blob)
            if not target.exists():
                os.replace(_blob(Path(tmp), blob), target)
        image = Image(ref.name, ref.tag, digest, platforms(root, digest), source)
    # A name:tag is one image (re-adding moves it); untagged images are told apart by digest.
    kept = [
        i
        for i in records(store_root)
        if (i.name, i.tag or i.digest) != (image.name, image.tag or image.digest)
    ]
    _write_records(store_root, [*kept, image])
    return image


def matches(image: Image, ref: image_ref.ImageRef) -> bool:
    if image.name != ref.name:
        return False
    if ref.digest:
        return image.digest == ref.digest
    return not ref.tag or image.tag == ref.tag


def remove(store_root: Path, text: str) -> list[Image]:
    """Drop the images a reference names (name, name:tag or name@digest), then blobs no image uses."""
    try:
        ref = image_ref.parse(text)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    current = records(store_root)
    gone = [i for i in current if matches(i, ref)]
    if not gone:
        have = ", ".join(f"{i.name}:{i.tag or i.digest[:19]}" for i in current) or "nothing"
        raise UserError(f"{text}: not in the site's images (have: {have})")
    kept = [i for i in current if i not in gone]
    _write_records(store_root, kept)
    root = images_dir(store_root)
    used = set().union(*(reachable(root, i.digest, i.reference) for i in kept)) if kept else set()
    for path in (root / "blobs" / "sha256").iterdir():
        if "sha256:" + path.name not in used:
            path.unlink()
    return gone


# The mirror host's side: its registry holds exactly what the records say (sovinfra's venv there: standard
# library only).


def _request(
    url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, data=body, method=method, headers={"Accept": ACCEPT, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)
    except OSError as exc:
        raise UserError(f"{url}: registry not reachable ({exc})") from exc


def _push_blob(registry: str, name: str, path: Path, digest: str) -> None:
    """One blob, monolithic upload (distribution's POST then PUT ?digest=), unless the registry has it."""
    base = f"http://{registry}/v2/{name}/blobs"
    if _request(f"{base}/{digest}", "HEAD")[0] == 200:
        return
    status, body, headers = _request(f"{base}/uploads/", "POST", b"")
    if status != 202 or "Location" not in headers:
        raise UserError(f"{name}: the registry refused an upload (HTTP {status}: {body[:200]!r})")
    location = headers["Location"]
    url = location if location.startswith("http") else f"http://{registry}{location}"
    url += ("&" if "?" in url else "?") + f"digest={digest}"
    size = path.stat().st_size
    with path.open("rb") as fh:
        kind = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        status, body, _ = _request(url, "PUT", fh, kind)
    if status != 201:
        raise UserError(f"{name}: blob {digest} refused by the registry (HTTP {status}: {body[:200]!r})")


def _push_manifest(registry: str, name: str, root: Path, digest: str, tag: str) -> None:
    """A manifest (an index's children first) with its bytes as stored: the digest cannot change."""
    data = _blob(root, digest).read_bytes()
    doc = json.loads(data)
    for entry in doc.get("manifests", []):
        _push_manifest(registry, name, root, entry["digest"], entry["digest"])
    for entry in [doc["config"]] if "config" in doc else []:
        _push_blob(registry, name, _blob(root, entry["digest"]), entry["digest"])
    for entry in doc.get("layers", []):
        _push_blob(registry, name, _blob(root, entry["digest"]), entry["digest"])
    media = doc.get("mediaType") or (INDEX_TYPES[0] if "manifests" in doc else MANIFEST_TYPES[0])
    url = f"http://{registry}/v2/{name}/manifests/{tag}"
    status, body, headers = _request(url, "PUT", data, {"Content-Type": media})
    if status != 201:
        raise UserError(f"{name}@{digest}: manifest refused by the registry (HTTP {status}: {body[:300]!r})")
    if headers.get("Docker-Content-Digest", digest) != digest:
        raise UserError(f"{name}@{digest}: the registry stored it as {headers['Docker-Content-Digest']}")


def in_registry(registry: str, image: Image) -> bool:
    """The registry serves the image's manifest by digest, byte for byte."""
    status, body, _ = _request(f"http://{registry}/v2/{image.name}/manifests/{image.digest}")
    return status == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == image.digest


def _catalog(registry: str) -> list[str]:
    """Every repository, page by page (the registry caps a page and links the next)."""
    names: list[str] = []
    url = f"http://{registry}/v2/_catalog"
    while url:
        status, body, headers = _request(url)
        if status != 200:
            raise UserError(f"{registry}: cannot list repositories (HTTP {status})")
        names += json.loads(body).get("repositories") or []
        link = headers.get("Link", "")
        url = f"http://{registry}{link.split(';')[0].strip('<> ')}" if 'rel="next"' in link else ""
    return names


def stale_in_registry(registry: str, wanted: list[Image]) -> list[tuple[str, str]]:
    """(name, digest) of tagged manifests the registry holds that no record names."""
    keep = {(i.name, i.digest) for i in wanted}
    stale: list[tuple[str, str]] = []
    for name in _catalog(registry):
        status, body, _ = _request(f"http://{registry}/v2/{name}/tags/list")
        for tag in (json.loads(body).get("tags") or []) if status == 200 else []:
            _, _, headers = _request(f"http://{registry}/v2/{name}/manifests/{tag}", "HEAD")
            digest = headers.get("Docker-Content-Digest", "")
            if digest and (name, digest) not in keep and (name, digest) not in stale:
                stale.append((name, digest))
    return stale


def sync_registry(
    store_root: Path, registry: str, log: Callable[[str], None], dry_run: bool = False
) -> dict[str, list[str]]:
    """Push what the registry lacks (verified by digest after the push), delete what no record names.
    The push speaks the distribution API itself (the mirror host needs no skopeo and its container
    stack): blobs first, then the manifests' stored bytes, so a digest cannot change on the way. dry_run:
    say what would be pushed and removed, change nothing."""
    root = images_dir(store_root)
    wanted = records(store_root)
    pushed, removed = [], []
    for image in wanted:
        if in_registry(registry, image):
            continue
        reachable(root, image.digest, image.reference)
        if dry_run:
            pushed.append(image.reference)
            continue
        log(f"pushing {image.reference} ...")
        _push_manifest(registry, image.name, root, image.digest, image.registry_tag)
        if not in_registry(registry, image):
            raise UserError(f"{image.reference}: the registry does not serve it by its digest after the push")
        pushed.append(image.reference)
    for name, digest in stale_in_registry(registry, wanted):
        if dry_run:
            removed.append(f"{name}@{digest}")
            continue
        status, body, _ = _request(f"http://{registry}/v2/{name}/manifests/{digest}", "DELETE")
        if status not in (202, 404):
            raise UserError(
                f"{name}@{digest}: the registry refused to delete it (HTTP {status}: {body[:200]!r})"
            )
        removed.append(f"{name}@{digest}")
    return {"pushed": pushed, "removed": removed}
