"""The model mirror with its real parts: the store on disk, nginx, huggingface_hub and transformers."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from sovinfra.cli import cli
from sovinfra.errors import UserError
from sovinfra.mirror import importer, names, publish, serve
from sovinfra.mirror.store import Store
from tests.conftest import ROOT, missing, readline
from tests.flaky_proxy import FlakyProxy
from tests.tiny_model import make_tiny_model


@pytest.fixture(autouse=True)
def _nginx() -> None:
    if not shutil.which("nginx"):
        missing("nginx is not installed (scripts/setup)")


REPO = "sovinfra/tiny"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Over 10 MiB: huggingface_hub resumes from what it has written, in 10 MiB chunks.
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny", weights_bytes=24 * 2**20)


@pytest.fixture
def store(tmp_path: Path, tiny: Path) -> Store:
    s = Store(tmp_path / "store")
    importer.import_folder(s, tiny, REPO, "main", False, lambda _m: None)
    return s


@pytest.fixture
def server(store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[serve.DevServer]:
    site = publish.publish(store)
    with serve.DevServer(site, store.root / "blobs" / "sha256") as srv:
        monkeypatch.setenv("HF_ENDPOINT", srv.url)
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", srv.url)
        monkeypatch.setattr(
            "huggingface_hub.constants.HUGGINGFACE_CO_URL_TEMPLATE",
            srv.url + "/{repo_id}/resolve/{revision}/{filename}",
        )
        yield srv


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def catalog(store: Store) -> dict:
    return {
        r: {"refs": store.refs(r), "commits": [store.commit(r, c).to_json() for c in store.commits(r)]}
        for r in store.repos()
    }


# -- store, import, verify


def test_import_is_content_addressed_and_deterministic(store: Store, tiny: Path, tmp_path: Path) -> None:
    commit = store.refs(REPO)["main"]
    files = {f.path: f for f in store.commit(REPO, commit).files}
    assert set(files) == {p.relative_to(tiny).as_posix() for p in tiny.rglob("*") if p.is_file()}
    assert files["model.safetensors"].lfs and not files["config.json"].lfs
    assert files["tiny.Q8_0.gguf"].sha256 == sha256(tiny / "tiny.Q8_0.gguf")
    # The git blob id the Hub lists for a small file.
    cfg = (tiny / "config.json").read_bytes()
    assert files["config.json"].git_sha1 == hashlib.sha1(b"blob %d\0" % len(cfg) + cfg).hexdigest()
    again = Store(tmp_path / "again")
    assert importer.import_folder(again, tiny, REPO, "v1", False, lambda _m: None) == commit


def test_pickle_weights_need_opt_in(tmp_path: Path) -> None:
    folder = tmp_path / "pk"
    folder.mkdir()
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(UserError, match="--allow-pickle"):
        importer.import_folder(Store(tmp_path / "s"), folder, "a/b", "main", False, lambda _m: None)
    assert not (tmp_path / "s" / "blobs").exists()  # refused before the first write
    importer.import_folder(Store(tmp_path / "s"), folder, "a/b", "main", True, lambda _m: None)
    (folder / "run.py").write_text("import os")
    with pytest.raises(UserError, match="not an allowed model file format"):
        importer.import_folder(Store(tmp_path / "s"), folder, "a/b", "main", True, lambda _m: None)


@pytest.mark.parametrize(
    "path", ["../etc/passwd", "/abs", "a/../../b", "a//b", ".git/config", "a\\b", "x/./y", "nl\n"]
)
def test_unsafe_paths_are_refused(path: str) -> None:
    with pytest.raises(UserError, match="unsafe file path"):
        names.check_path(path, "test")


def test_interrupted_import_leaves_nothing_visible_and_resumes(
    tmp_path: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Store(tmp_path / "store")
    real_add = Store.add_blob
    calls = {"n": 0}

    def dying_add(self: Store, source, expected_sha256=None):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # the import is killed mid-way
        return real_add(self, source, expected_sha256)

    monkeypatch.setattr(Store, "add_blob", dying_add)
    with pytest.raises(KeyboardInterrupt):
        importer.import_folder(s, tiny, REPO, "main", False, lambda _m: None)
    assert s.repos() == [] and s.commits(REPO) == []
    assert not any((tmp_path / "store" / "tmp").iterdir())
    monkeypatch.setattr(Store, "add_blob", real_add)
    importer.import_folder(s, tiny, REPO, "main", False, lambda _m: None)
    assert s.repos() == [REPO]


def test_an_import_that_cannot_write_says_so_and_leaves_nothing(tiny: Path, tmp_path: Path) -> None:
    """A write refused mid-blob (a full disk; here the file size limit, whose signal is ignored as a daemon
    would) is one line naming the store, no traceback, and nothing published or left in tmp."""
    root = tmp_path / "store"
    limit = 4 * 2**20  # past the small files, inside the 24 MiB weights
    code = (
        "import resource, signal, sys; from sovinfra.cli import main; "
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
        "sys.argv = ['sovinfra', *sys.argv[1:]]; main()"
    )
    args = ["mirror", "import", str(tiny), "--repo", REPO, "--store", str(root)]
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert f"{root}: cannot write a blob: File too large" in done.stderr
    s = Store(root)
    assert s.repos() == [] and s.commits(REPO) == []
    assert not any((root / "tmp").iterdir())


def _size(path: Path) -> int:
    """A temporary file's size, 0 once the import has renamed it into the store."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def test_an_import_killed_by_another_process_leaves_nothing_visible(tmp_path: Path) -> None:
    """SIGKILL from outside while a blob is half written: nothing shows in the store but an unfinished
    temporary file, which the next import sweeps before it completes."""
    big = make_tiny_model(tmp_path / "big", weights_bytes=256 * 2**20)
    root = tmp_path / "store"
    args = ["mirror", "import", str(big), "--repo", REPO, "--store", str(root)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sovinfra", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    partial: list[Path] = []
    deadline = time.monotonic() + 60
    while not partial and proc.poll() is None and time.monotonic() < deadline:
        tmp = root / "tmp"
        # A temporary blob past 1 MiB: the import is mid-way through the weights.
        partial = [f for f in (tmp.iterdir() if tmp.is_dir() else []) if _size(f) > 2**20]
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert partial, "the import finished (or hung) before it could be killed mid-blob"
    assert proc.returncode == -signal.SIGKILL
    s = Store(root)
    assert s.repos() == [] and s.commits(REPO) == []
    blobs = root / "blobs" / "sha256"
    for blob in blobs.iterdir() if blobs.is_dir() else []:  # whatever is there is whole
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    leftovers = set((root / "tmp").iterdir())
    assert leftovers
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert not any(f in leftovers for f in (root / "tmp").iterdir())  # swept
    assert s.repos() == [REPO]
    verified = CliRunner().invoke(cli, ["mirror", "verify", "--store", str(root), "--json"])
    assert verified.exit_code == 0 and json.loads(verified.output)["ok"], verified.output


def test_verify_catches_a_corrupted_blob(store: Store) -> None:
    runner = CliRunner()
    ok = runner.invoke(cli, ["mirror", "verify", "--store", str(store.root), "--json"])
    assert ok.exit_code == 0 and json.loads(ok.output)["ok"]
    blob = next(
        f for f in store.commit(REPO, store.refs(REPO)["main"]).files if f.path == "model.safetensors"
    )
    path = store.blob_path(blob.sha256)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF  # same size, different bytes: what the HF client would accept
    path.write_bytes(bytes(data))
    bad = runner.invoke(cli, ["mirror", "verify", "--store", str(store.root)])
    assert bad.exit_code == 1
    assert "CORRUPT" in bad.output and "model.safetensors" in bad.output


# -- export bundles


def test_export_then_import_gives_identical_catalogs(store: Store, tmp_path: Path) -> None:
    runner = CliRunner()
    bundle = tmp_path / "bundle"
    assert (
        runner.invoke(cli, ["mirror", "export", str(bundle), REPO, "--store", str(store.root)]).exit_code == 0
    )
    fresh = Store(tmp_path / "fresh")
    result = runner.invoke(cli, ["mirror", "import", str(bundle), "--store", str(fresh.root)])
    assert result.exit_code == 0, result.output
    assert catalog(fresh) == catalog(store)
    listing = json.loads(runner.invoke(cli, ["mirror", "ls", "--json", "--store", str(fresh.root)]).output)
    assert listing["repos"][0]["refs"] == ["main"]


def test_tampered_bundle_is_refused_before_anything_is_published(store: Store, tmp_path: Path) -> None:
    from sovinfra.mirror import bundle

    out = tmp_path / "bundle"
    bundle.export(store, out, [REPO], None)
    victim = next((out / "blobs" / "sha256").iterdir())
    data = bytearray(victim.read_bytes())
    data[0] ^= 1
    victim.write_bytes(bytes(data))
    fresh = Store(tmp_path / "fresh")
    with pytest.raises(UserError, match="corrupt"):
        importer.import_bundle(fresh, out, None, lambda _m: None)
    assert fresh.repos() == []

    manifest = json.loads((out / "manifest.json").read_text())
    manifest["repos"][REPO]["commits"][0]["files"][0]["path"] = "../../escape"
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="checksum mismatch"):
        importer.import_bundle(fresh, out, None, lambda _m: None)
    # Even with a recomputed checksum, a traversal path never passes.
    data2 = (out / "manifest.json").read_bytes()
    (out / "manifest.json.sha256").write_text(hashlib.sha256(data2).hexdigest() + "  manifest.json\n")
    with pytest.raises(UserError, match="unsafe file path"):
        importer.import_bundle(fresh, out, None, lambda _m: None)
    assert fresh.repos() == []


def test_signed_bundle(store: Store, tmp_path: Path) -> None:
    from sovinfra.mirror import bundle

    key = tmp_path / "site_key"
    other = tmp_path / "other_key"
    for k in (key, other):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(k)], check=True)
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"{bundle.SIGNER} {key.with_suffix('.pub').read_text()}")
    out = tmp_path / "bundle"
    bundle.export(store, out, [REPO], key)
    importer.import_bundle(Store(tmp_path / "ok"), out, signers, lambda _m: None)
    signers.write_text(f"{bundle.SIGNER} {other.with_suffix('.pub').read_text()}")
    with pytest.raises(UserError, match="signature not valid"):
        importer.import_bundle(Store(tmp_path / "no"), out, signers, lambda _m: None)


# -- serving over the Hugging Face protocol


def test_snapshot_download_by_branch_and_by_commit(
    server: serve.DevServer, store: Store, tiny: Path, tmp_path: Path
) -> None:
    from huggingface_hub import snapshot_download

    commit = store.refs(REPO)["main"]
    by_branch = Path(snapshot_download(REPO, cache_dir=str(tmp_path / "c1")))
    by_commit = Path(snapshot_download(REPO, revision=commit, cache_dir=str(tmp_path / "c2")))
    assert by_branch.name == by_commit.name == commit
    for f in tiny.rglob("*"):
        if f.is_file():
            rel = f.relative_to(tiny)
            assert sha256(by_branch / rel) == sha256(f) == sha256(by_commit / rel), rel


def test_hf_hub_download_names_and_errors(server: serve.DevServer, store: Store, tmp_path: Path) -> None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    cache = str(tmp_path / "c")
    assert (
        Path(hf_hub_download(REPO, "nested/deeper/notes with spaces.txt", cache_dir=cache)).read_text()
        == "spaces work\n"
    )
    assert json.loads(Path(hf_hub_download(REPO, "nested/modèle-ünïcode.json", cache_dir=cache)).read_text())
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "no-such-file.json", cache_dir=cache)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "config.json", revision="no-such-branch", cache_dir=cache)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("nobody/nothing", "config.json", cache_dir=cache)


def test_no_xet_and_hub_headers(server: serve.DevServer, store: Store) -> None:
    commit = store.refs(REPO)["main"]
    head = subprocess.run(
        ["curl", "-sSI", f"{server.url}/{REPO}/resolve/{commit}/model.safetensors"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    assert f"x-repo-commit: {commit}" in head and "x-linked-size:" in head and 'etag: "' in head
    assert "xet" not in head
    tree = subprocess.run(
        ["curl", "-sS", f"{server.url}/api/models/{REPO}/tree/main?recursive=true"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "xetHash" not in tree and json.loads(tree)
    blob = next(f for f in store.commit(REPO, commit).files if f.path == "config.json")
    plain = subprocess.run(
        ["curl", "-sS", f"{server.url}/blobs/sha256/{blob.sha256}"], capture_output=True, check=True
    )
    assert hashlib.sha256(plain.stdout).hexdigest() == blob.sha256


def test_the_dev_server_owns_its_port_from_the_start(server: serve.DevServer, store: Store) -> None:
    """The port is bound before nginx starts and handed to it: nginx serves on that very socket, and a
    second server asked for the same port is refused by name instead of racing for it."""
    listeners = subprocess.run(
        ["ss", "-Hltnp", f"sport = :{server.port}"], capture_output=True, text=True, check=True
    ).stdout
    assert server.proc is not None and f"pid={server.proc.pid}," in listeners, listeners
    with pytest.raises(UserError, match=f"127.0.0.1:{server.port} cannot be listened on"):
        serve.DevServer(publish.publish(store), store.root / "blobs" / "sha256", port=server.port)


def test_cut_download_resumes_with_206(
    server: serve.DevServer, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import hf_hub_download

    commit = store.refs(REPO)["main"]
    f = next(f for f in store.commit(REPO, commit).files if f.path == "model.safetensors")
    proxy = FlakyProxy(server.port, "model.safetensors", cut_after=f.size * 3 // 4)
    try:
        url = f"http://127.0.0.1:{proxy.port}"
        monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", url)
        monkeypatch.setattr(
            "huggingface_hub.constants.HUGGINGFACE_CO_URL_TEMPLATE",
            url + "/{repo_id}/resolve/{revision}/{filename}",
        )
        path = Path(
            hf_hub_download(REPO, "model.safetensors", revision=commit, cache_dir=str(tmp_path / "c"))
        )
    finally:
        proxy.close()
    assert proxy.cuts == 1
    assert sha256(path) == f.sha256
    log = (server.prefix / "access.log").read_text().splitlines()
    assert any('"GET /sovinfra/tiny/resolve/' in line and '" 206 ' in line for line in log), "\n".join(log)


def test_transformers_loads_config_and_tokenizer(server: serve.DevServer, tmp_path: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(REPO, cache_dir=str(tmp_path / "t"))
    assert config.model_type == "gpt2" and config.n_embd == 16
    tokenizer = AutoTokenizer.from_pretrained(REPO, cache_dir=str(tmp_path / "t"))
    assert tokenizer("hello gpu world")["input_ids"] == [2, 5, 3]


def test_hub_import_keeps_upstream_commit_and_verifies(
    server: serve.DevServer, store: Store, tmp_path: Path
) -> None:
    downstream = Store(tmp_path / "downstream")
    commit = importer.import_hub(downstream, REPO, "main", False, lambda _m: None)
    assert commit == store.refs(REPO)["main"]
    assert catalog(downstream)[REPO]["commits"][0]["files"] == catalog(store)[REPO]["commits"][0]["files"]


def test_serve_dev_command_stops_on_sigterm(store: Store) -> None:
    env = {**os.environ, "SOVINFRA_MIRROR_STORE": str(store.root)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sovinfra", "mirror", "serve", "--dev"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = readline(proc.stdout, 60).strip()
        assert line.startswith("HF_ENDPOINT=http://127.0.0.1:")
        url = line.split("=", 1)[1]
        info = subprocess.run(
            ["curl", "-sS", f"{url}/api/models/{REPO}"], capture_output=True, text=True, check=True
        )
        assert json.loads(info.stdout)["id"] == REPO
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    assert subprocess.run(["curl", "-s", url], capture_output=True).returncode != 0  # nginx is gone


# -- the node side: pull, verify, then mark ready


def test_node_pull_verifies_resumes_and_is_idempotent(
    server: serve.DevServer, store: Store, tiny: Path, tmp_path: Path
) -> None:
    from sovinfra.mirror import pull

    cache = tmp_path / "hub"
    commit = store.refs(REPO)["main"]
    first = pull.pull(server.url, REPO, commit, cache, streams=3)
    assert first.changed and first.commit == commit and pull.is_ready(cache, REPO, commit)
    snapshot = pull.repo_cache_dir(cache, REPO) / "snapshots" / commit
    for f in tiny.rglob("*"):
        if f.is_file():
            assert sha256(snapshot / f.relative_to(tiny)) == sha256(f)
    assert not pull.pull(server.url, REPO, commit, cache).changed  # re-run: nothing to do

    # A byte flipped in the node's copy (size and mtime kept) is found by its moved ctime and fetched again.
    gguf = (snapshot / "tiny.Q8_0.gguf").resolve()
    st = gguf.stat()
    data = bytearray(gguf.read_bytes())
    data[10] ^= 0x01
    gguf.write_bytes(bytes(data))
    os.utime(gguf, ns=(st.st_atime_ns, st.st_mtime_ns))
    repaired = pull.pull(server.url, REPO, commit, cache)
    assert repaired.changed and repaired.downloaded == ["tiny.Q8_0.gguf"]
    assert sha256(gguf) == next(
        f.sha256 for f in store.commit(REPO, commit).files if f.path == "tiny.Q8_0.gguf"
    )
    assert not pull.pull(server.url, REPO, commit, cache).changed

    # A cut transfer left a partial file: the next pull resumes it (a Range request) and verifies.
    big = next(f for f in store.commit(REPO, commit).files if f.path == "model.safetensors")
    blob = pull.repo_cache_dir(cache, REPO) / "blobs" / big.sha256
    blob.unlink()
    (blob.parent / (big.sha256 + pull.PARTIAL)).write_bytes(store.blob_path(big.sha256).read_bytes()[:1000])
    again = pull.pull(server.url, REPO, commit, cache)
    assert again.downloaded == ["model.safetensors"] and again.bytes == big.size - 1000
    assert sha256(blob) == big.sha256

    # huggingface_hub finds the pulled model offline.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    code = f"import huggingface_hub as h; print(h.snapshot_download('sovinfra/tiny', revision='{commit}'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith(commit)


def test_corrupted_mirror_blob_never_becomes_ready_on_the_node(
    server: serve.DevServer, store: Store, tmp_path: Path
) -> None:
    from sovinfra.mirror import pull

    commit = store.refs(REPO)["main"]
    f = next(f for f in store.commit(REPO, commit).files if f.path == "tiny.Q8_0.gguf")
    path = store.blob_path(f.sha256)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))  # same size: huggingface_hub alone would accept it
    cache = tmp_path / "hub"
    with pytest.raises(UserError, match=r"tiny\.Q8_0\.gguf: sha256 .* does not match"):
        pull.pull(server.url, REPO, commit, cache)
    assert not pull.is_ready(cache, REPO, commit)
    blobs = pull.repo_cache_dir(cache, REPO) / "blobs"
    assert not (blobs / f.sha256).exists() and not list(blobs.glob("*" + pull.PARTIAL))
