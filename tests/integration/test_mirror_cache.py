"""The rack cache with its real parts: the role's nginx config (roles/mirror_cache) in front of the mirror's
nginx (`serve --dev`), and nodes' pulls through it: each file leaves the mirror once however many nodes
ask at once, cut transfers resume from the cache, and a byte changed in the cache is refused by the node."""

from __future__ import annotations

import re
import shutil
import threading
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from sovinfra.errors import UserError
from sovinfra.mirror import importer, publish, pull, serve
from sovinfra.mirror.store import Store
from tests.conftest import missing
from tests.rack_cache import RackCache
from tests.tiny_model import make_tiny_model

REPO = "sovinfra/tiny"
REQUEST = re.compile(r'"(?:GET|HEAD) (?P<path>\S+) HTTP/1\.[01]"')


@pytest.fixture(autouse=True)
def _nginx() -> None:
    if not shutil.which("nginx"):
        missing("nginx is not installed (scripts/setup)")


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[serve.DevServer, Store]]:
    """The mirror: a store holding a model of a few MiB, served by the mirror's own nginx config."""
    tiny = make_tiny_model(tmp_path_factory.mktemp("model") / "tiny", weights_bytes=6 * 2**20)
    store = Store(tmp_path_factory.mktemp("store"))
    importer.import_folder(store, tiny, REPO, "main", False, lambda _m: None)
    with serve.DevServer(publish.publish(store), store.root / "blobs" / "sha256") as srv:
        yield srv, store


@pytest.fixture
def cache(origin: tuple[serve.DevServer, Store]) -> Iterator[RackCache]:
    c = RackCache(f"127.0.0.1:{origin[0].port}")
    yield c
    c.stop()


def requests(log: Path) -> Counter[str]:
    return Counter(m["path"] for m in REQUEST.finditer(log.read_text()))


def test_each_file_leaves_the_mirror_once_for_nodes_pulling_at_once(
    origin: tuple[serve.DevServer, Store], cache: RackCache, tmp_path: Path
) -> None:
    srv, store = origin
    commit = store.refs(REPO)["main"]
    files = store.commit(REPO, commit).files
    before = requests(srv.prefix / "access.log")
    nodes = [tmp_path / f"node{i}" for i in range(4)]
    errors: list[BaseException] = []

    def node(hub: Path) -> None:
        try:
            pull.pull(srv.url, REPO, commit, hub, streams=2, via=cache.url)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=node, args=(hub,)) for hub in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    for hub in nodes:
        assert pull.is_ready(hub, REPO, commit)
        blobs = pull.repo_cache_dir(hub, REPO) / "blobs"
        assert {p.name for p in blobs.iterdir()} == {f.sha256 if f.lfs else f.git_sha1 for f in files}

    served = requests(srv.prefix / "access.log") - before
    resolve = {f"/{REPO}/resolve/{commit}/{urllib.parse.quote(f.path)}" for f in files}
    # The mirror: every file once (through the cache), every node's listing straight from the mirror.
    assert {p: n for p, n in served.items() if p in resolve} == dict.fromkeys(resolve, 1)
    assert served[f"/api/models/{REPO}/revision/{commit}"] == len(nodes)
    assert set(served) == resolve | {f"/api/models/{REPO}/revision/{commit}"}
    # The cache: every file for every node (and nothing else but the `HEAD /` that saw it start).
    assert requests(cache.prefix / "access.log") - Counter({"/": 1}) == dict.fromkeys(resolve, len(nodes))


def test_a_cut_transfer_resumes_from_the_cache(
    origin: tuple[serve.DevServer, Store], cache: RackCache, tmp_path: Path
) -> None:
    srv, store = origin
    commit = store.refs(REPO)["main"]
    pull.pull(srv.url, REPO, commit, tmp_path / "warm", via=cache.url)  # the cache holds the commit now
    big = max(store.commit(REPO, commit).files, key=lambda f: f.size)
    blobs = pull.repo_cache_dir(tmp_path / "hub", REPO) / "blobs"
    blobs.mkdir(parents=True)
    (blobs / (big.sha256 + pull.PARTIAL)).write_bytes(store.blob_path(big.sha256).read_bytes()[:4096])
    before = requests(srv.prefix / "access.log")

    resumed = pull.pull(srv.url, REPO, commit, tmp_path / "hub", via=cache.url)
    assert pull.is_ready(tmp_path / "hub", REPO, commit)
    assert big.path in resumed.downloaded
    assert resumed.bytes == sum(f.size for f in store.commit(REPO, commit).files) - 4096  # a 206 from 4096
    served = requests(srv.prefix / "access.log") - before
    assert not [p for p in served if "/resolve/" in p], served  # all from the cache


def test_a_byte_changed_in_the_cache_is_refused_by_the_node(
    origin: tuple[serve.DevServer, Store], cache: RackCache, tmp_path: Path
) -> None:
    srv, store = origin
    commit = store.refs(REPO)["main"]
    pull.pull(srv.url, REPO, commit, tmp_path / "warm", via=cache.url)
    big = max(store.commit(REPO, commit).files, key=lambda f: f.size)
    cached = max((p for p in cache.cache_dir.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(cached.read_bytes())
    data[-1] ^= 0xFF  # the body's last byte; nginx's header before it is untouched
    cached.write_bytes(bytes(data))

    hub = tmp_path / "hub"
    with pytest.raises(UserError, match=rf"{re.escape(big.path)}: sha256 .* does not match the mirror's"):
        pull.pull(srv.url, REPO, commit, hub, via=cache.url)
    assert not pull.is_ready(hub, REPO, commit)
    assert not (pull.repo_cache_dir(hub, REPO) / "blobs" / big.sha256).exists()
