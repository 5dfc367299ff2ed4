"""The rack cache with its real parts: the role's nginx config (roles/mirror_cache) in front of the mirror's
nginx (`serve --dev`), and nodes' pulls through it: each file leaves the mirror once however many nodes
ask at once, cut transfers resume from the cache, and a byte changed in the cache is refused by the node."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import jinja2
import pytest

from sovinfra.errors import UserError
from sovinfra.mirror import importer, publish, pull, serve
from sovinfra.mirror.store import Store
from tests.conftest import ROOT, missing
from tests.tiny_model import make_tiny_model

REPO = "sovinfra/tiny"
PROBE = "/api/models/probe/probe"  # passed to the mirror, which answers 404
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


class RackCache:
    """nginx with the role's template, rendered as Ansible would for a cache host, in front of `origin`."""

    def __init__(self, origin: str) -> None:
        self.sock = serve.listen_socket(0)
        self.port = int(self.sock.getsockname()[1])
        self.prefix = Path(tempfile.mkdtemp(prefix="sovinfra-cache-"))
        (self.prefix / "tmp").mkdir()
        self.cache_dir = self.prefix / "cache"
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(ROOT / "roles" / "mirror_cache" / "templates"),
            undefined=jinja2.StrictUndefined,
        )
        server = self.prefix / "cache-server.conf"
        server.write_text(
            env.get_template("mirror-cache.conf.j2").render(
                ansible_managed="test",
                __mirror_cache_origin=origin,
                mirror_cache_listen=f"127.0.0.1:{self.port}",
                mirror_cache_dir=str(self.cache_dir),
                mirror_cache_max_size="1g",
                mirror_cache_inactive="1d",
            )
        )
        self.conf = self.prefix / "nginx.conf"
        self.conf.write_text(serve.dev_conf(self.prefix, server, "root"))
        cmd = ["nginx", "-c", str(self.conf), "-p", str(self.prefix), "-e", str(self.prefix / "error.log")]
        test = subprocess.run([*cmd, "-t"], capture_output=True, text=True, check=False)
        assert test.returncode == 0, test.stderr
        fd = self.sock.fileno()
        self.proc = subprocess.Popen(cmd, env={**os.environ, "NGINX": f"{fd};"}, pass_fds=(fd,))
        deadline = time.monotonic() + 10
        while not self._answers():
            assert self.proc.poll() is None and time.monotonic() < deadline, "the cache's nginx did not start"
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _answers(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=0.5)
        try:
            conn.request("HEAD", PROBE)
            conn.getresponse()
            return True
        except OSError:
            return False
        finally:
            conn.close()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)  # fast: kept-alive connections need not wind down
        self.proc.wait(timeout=10)
        self.sock.close()
        shutil.rmtree(self.prefix, ignore_errors=True)


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
    # The cache: every file for every node (and nothing else but its start-up probe).
    assert requests(cache.prefix / "access.log") - Counter({PROBE: 1}) == dict.fromkeys(resolve, len(nodes))


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
