"""Container image references and the store's images: parsed like the runtimes do, kept by digest."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from sovinfra.errors import UserError
from sovinfra.lab import image
from sovinfra.mirror import image_ref, images
from tests.conftest import missing

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("busybox", "docker.io", "library/busybox", "", ""),
        ("busybox:1.36", "docker.io", "library/busybox", "1.36", ""),
        ("vllm/vllm-openai:v0.11.0", "docker.io", "vllm/vllm-openai", "v0.11.0", ""),
        (f"nvcr.io/nvidia/cuda:12.8.1-base@{DIGEST}", "nvcr.io", "nvidia/cuda", "12.8.1-base", DIGEST),
        (f"localhost:5000/team/app@{DIGEST}", "localhost:5000", "team/app", "", DIGEST),
        ("index.docker.io/library/redis", "docker.io", "library/redis", "", ""),
        ("ghcr.io/org/a.b_c-d/e:latest", "ghcr.io", "org/a.b_c-d/e", "latest", ""),
    ],
)  # fmt: skip
def test_parse_as_the_runtimes_read_references(
    text: str, registry: str, repository: str, tag: str, digest: str
) -> None:
    ref = image_ref.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert image_ref.parse(str(ref)) == ref


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("Busybox", "invalid repository"),
        ("busybox@sha256:abc", "digest must be sha256"),
        ("busybox@md5:" + "a" * 32, "digest must be sha256"),
        ("busybox:-x", "invalid tag"),
        ("nvcr.io//cuda", "invalid repository"),
    ],
)
def test_parse_names_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        image_ref.parse(text)


def test_pinned_refuses_a_tag_alone() -> None:
    with pytest.raises(ValueError, match=r"no digest; pin the image as nvcr.io/nvidia/cuda@sha256"):
        image_ref.pinned("nvcr.io/nvidia/cuda:12.8.1-base-ubuntu24.04")
    assert image_ref.pinned(f"nvcr.io/nvidia/cuda@{DIGEST}").digest == DIGEST


def _tar(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def archive(tmp_path: Path, name: str, content: bytes, ref_name: str = "v1") -> tuple[Path, str]:
    path = tmp_path / f"{name}.tar"
    layers = [
        image.tar_layer(_tar({"etc/shared": b"same in every image\n"})),
        image.tar_layer(_tar({name: content})),
    ]
    return path, image.write_archive(layers, path, ref_name)


def test_an_archive_keeps_its_digest_and_is_recorded_by_it(tmp_path: Path) -> None:
    store = tmp_path / "store"
    path, digest = archive(tmp_path, "app", b"one")
    added = images.add(store, str(path), "docker.io/site/app:v1", lambda _m: None)
    assert added.digest == digest and added.platforms == {"linux/amd64": digest}
    assert added.reference == f"docker.io/site/app@{digest}"
    assert images.records(store) == [added]
    # The store is an OCI layout skopeo reads, the image named by its digest.
    index = json.loads((store / "images" / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [digest]
    assert images.reachable(store / "images", digest, "app") >= {digest}


def test_an_archive_without_a_name_needs_one(tmp_path: Path) -> None:
    path, _ = archive(tmp_path, "app", b"one")
    with pytest.raises(
        UserError, match=r"app.tar: the archive does not name its image; give one with --name"
    ):
        images.add(tmp_path / "store", str(path), None, lambda _m: None)
    named, digest = archive(tmp_path, "named", b"x", ref_name="ghcr.io/site/named:2")
    assert (
        images.add(tmp_path / "store", str(named), None, lambda _m: None).reference
        == f"ghcr.io/site/named@{digest}"
    )


def test_a_broken_archive_records_nothing(tmp_path: Path) -> None:
    store = tmp_path / "store"
    path, _ = archive(tmp_path, "app", b"one")
    # Drop one layer from the archive: skopeo refuses it and nothing names the image.
    broken = tmp_path / "broken.tar"
    with tarfile.open(path) as src, tarfile.open(broken, "w") as dst:
        members = [m for m in src.getmembers() if m.name.startswith("blobs/")]
        layer = next(m for m in members if src.extractfile(m).read(2) == b"\x1f\x8b")  # type: ignore[union-attr]
        for member in src.getmembers():
            if member.name != layer.name:
                dst.addfile(member, src.extractfile(member))
    with pytest.raises(UserError, match=r"broken.tar: skopeo copy failed"):
        images.add(store, str(broken), "docker.io/site/app:v1", lambda _m: None)
    assert images.records(store) == []
    assert not list((store / "images" / "tmp").iterdir())
    (tmp_path / "junk.tar").write_bytes(b"not a tar")
    with pytest.raises(UserError, match=r"junk.tar: not a readable OCI or docker archive"):
        images.add(store, str(tmp_path / "junk.tar"), "docker.io/site/app:v1", lambda _m: None)


def test_a_tampered_blob_is_named(tmp_path: Path) -> None:
    store = tmp_path / "store"
    path, digest = archive(tmp_path, "app", b"one")
    images.add(store, str(path), "docker.io/site/app:v1", lambda _m: None)
    blobs = store / "images" / "blobs" / "sha256"
    layer = json.loads((blobs / digest.removeprefix("sha256:")).read_bytes())["layers"][1]["digest"]
    victim = blobs / layer.removeprefix("sha256:")
    victim.write_bytes(victim.read_bytes() + b"!")
    with pytest.raises(UserError, match=rf"docker.io/site/app: blob {layer} does not match its digest"):
        images.reachable(store / "images", digest, "docker.io/site/app")


def test_rm_drops_the_image_and_only_its_own_blobs(tmp_path: Path) -> None:
    store = tmp_path / "store"
    one, d1 = archive(tmp_path, "one", b"1")
    two, d2 = archive(tmp_path, "two", b"2")
    images.add(store, str(one), "docker.io/site/one:v1", lambda _m: None)
    images.add(store, str(two), "docker.io/site/two:v1", lambda _m: None)
    before = set((store / "images" / "blobs" / "sha256").iterdir())
    gone = images.remove(store, "docker.io/site/one")
    assert [g.digest for g in gone] == [d1]
    assert [r.digest for r in images.records(store)] == [d2]
    after = set((store / "images" / "blobs" / "sha256").iterdir())
    # Manifest, config and own layer gone; the shared layer stays with the image still using it.
    assert len(before - after) == 3
    assert images.reachable(store / "images", d2, "two") == {"sha256:" + p.name for p in after}
    with pytest.raises(
        UserError, match=r"site/one: not in the site's images \(have: docker.io/site/two:v1\)"
    ):
        images.remove(store, "site/one")


def test_re_adding_a_tag_moves_it(tmp_path: Path) -> None:
    store = tmp_path / "store"
    one, _ = archive(tmp_path, "one", b"1")
    two, d2 = archive(tmp_path, "two", b"2")
    images.add(store, str(one), "docker.io/site/app:v1", lambda _m: None)
    images.add(store, str(two), "docker.io/site/app:v1", lambda _m: None)
    assert [(r.tag, r.digest) for r in images.records(store)] == [("v1", d2)]


def test_a_digest_asked_for_must_be_the_one_copied(tmp_path: Path) -> None:
    path, digest = archive(tmp_path, "app", b"one")
    with pytest.raises(UserError, match=rf"copied image has digest {digest}, not the {DIGEST} asked for"):
        images.add(tmp_path / "store", str(path), f"docker.io/site/app@{DIGEST}", lambda _m: None)


@pytest.fixture(autouse=True)
def _skopeo() -> None:
    if not shutil.which("skopeo"):
        missing("skopeo is not installed (scripts/setup installs it)")


def test_images_travel_in_the_offline_bundle(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from sovinfra.cli import cli

    store, fresh, bundle = tmp_path / "store", tmp_path / "fresh", tmp_path / "bundle"
    path, digest = archive(tmp_path, "app", b"one")
    images.add(store, str(path), "nvcr.io/site/app:v1", lambda _m: None)
    (store / "blobs").mkdir()
    exported = CliRunner().invoke(cli, ["mirror", "export", str(bundle), "--store", str(store)])
    assert exported.exit_code == 0, exported.output
    imported = CliRunner().invoke(cli, ["mirror", "import", str(bundle), "--store", str(fresh)])
    assert imported.exit_code == 0, imported.output
    assert images.records(fresh) == images.records(store)
    blobs = images.reachable(store / "images", digest, "app")
    assert images.reachable(fresh / "images", digest, "app") == blobs
    # A blob altered on the media: the import refuses the bundle and the fresh store gets no catalog.
    blob = next((bundle / "files" / "images" / "blobs" / "sha256").iterdir())
    blob.write_bytes(blob.read_bytes() + b"!")
    again = CliRunner().invoke(cli, ["mirror", "import", str(bundle), "--store", str(tmp_path / "third")])
    assert again.exit_code != 0 and f"images/blobs/sha256/{blob.name}" in again.output
    assert images.records(tmp_path / "third") == []
