"""Package snapshots with the real aptly against Debian's registry, read back by the real apt.

The need is kept small (priority required + hello) so each sync downloads a few tens of MB.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from debian.debian_support import Version

from sovinfra.cli import cli
from sovinfra.errors import UserError
from sovinfra.mirror import apt_plan, apt_snapshots, bundle_files, sitekey
from sovinfra.netboot import image
from tests.conftest import readline

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
BOOKWORM_KEYS = ["B8B80B5B623EAB6AD8775C45B7C5D7D6350947F8", "4D64FEC119C2029067D6E791F8D2585B8783D481"]
SECURITY_KEY = "05AB90340C0C5E797F44A8C8254CF3B5AEC0A8F0"
NEED = ["hello"]


def upstream(**change: object) -> apt_plan.Upstream:
    entry = {
        "name": "debian",
        "url": os.environ.get("SOVINFRA_LAB_DEBIAN_MIRROR", "http://deb.debian.org/debian"),
        "distributions": ["bookworm"],
        "keyring": KEYRING,
        "key_fingerprints": BOOKWORM_KEYS,
        **change,
    }
    return apt_plan.parse_upstreams([entry], "test")[0]


def tree_state(store: Path) -> dict[str, bytes]:
    """Every dists file of the published tree with its bytes: what a client could read."""
    dists = apt_snapshots.published_tree(store) / "dists"
    return {str(p.relative_to(dists)): p.read_bytes() for p in sorted(dists.rglob("*")) if p.is_file()}


def apt_options(tmp: Path) -> list[str]:
    """apt with its state, cache, sources and preferences under `tmp` only, and nothing installed."""
    return [
        f"-oDir::State={tmp}",
        f"-oDir::State::status={tmp}/status",
        f"-oDir::Cache={tmp}/cache",
        f"-oDir::Etc::SourceList={tmp}/etc/none.list",
        f"-oDir::Etc::SourceParts={tmp}/etc/sources.list.d",
        f"-oDir::Etc::Preferences={tmp}/etc/none.pref",
        f"-oDir::Etc::PreferencesParts={tmp}/etc/preferences.d",
        "-oAPT::Sandbox::User=root",
    ]


def apt_reads(store: Path, snap_id: str, tmp: Path) -> str:
    """The real apt, as a host would: file: source, signed-by the site key, then `apt-cache policy`."""
    for d in ("lists/partial", "cache/archives/partial", "etc/sources.list.d", "etc/preferences.d"):
        (tmp / d).mkdir(parents=True, exist_ok=True)
    (tmp / "status").touch()
    (tmp / "etc/sources.list.d/site.sources").write_text(
        f"Types: deb\nURIs: file:{apt_snapshots.published_tree(store)}\nSuites: {snap_id}\nComponents: main\n"
        f"Signed-By: {sitekey.public_keyring(store)}\nCheck-Valid-Until: no\n"
    )
    opts = apt_options(tmp)
    update = subprocess.run(["apt-get", *opts, "update"], capture_output=True, text=True, check=False)
    assert update.returncode == 0 and "W:" not in update.stderr, update.stdout + update.stderr
    return subprocess.run(
        ["apt-cache", *opts, "policy", "hello"], capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, apt_snapshots.SnapshotInfo]:
    store = tmp_path_factory.mktemp("store")
    info = apt_snapshots.sync(store, [upstream()], NEED, ["amd64"], log=lambda _m: None)
    return store, info


def test_sync_publishes_a_signed_snapshot_apt_accepts(
    synced: tuple[Path, apt_snapshots.SnapshotInfo], tmp_path: Path
) -> None:
    store, info = synced
    assert apt_snapshots.current(store) == info.id and info.current
    assert info.packages > 50  # priority required with dependencies, and hello
    policy = apt_reads(store, info.id, tmp_path)
    assert "Candidate: (none)" not in policy and "Candidate: 2." in policy, policy
    # The site key signs: ed25519, fingerprint in the InRelease's signature.
    fpr = sitekey.fingerprint(store)
    assert fpr and (store / "keys" / "site.gpg").stat().st_size > 0
    inrelease = apt_snapshots.published_tree(store) / "dists" / info.id / "InRelease"
    verify = subprocess.run(
        ["gpgv", "--keyring", str(sitekey.public_keyring(store)), str(inrelease)],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0 and fpr[-16:] in verify.stderr.replace(" ", ""), verify.stderr
    # The private key stays in its 0700 home.
    assert oct(sitekey.homedir(store).stat().st_mode & 0o777) == "0o700"


def test_ls_json_and_second_snapshot_leaves_the_first_untouched(
    synced: tuple[Path, apt_snapshots.SnapshotInfo],
) -> None:
    store, first = synced
    before = {k: v for k, v in tree_state(store).items() if k.startswith(first.id + "/")}
    time.sleep(1.1)  # ids are seconds
    second = apt_snapshots.sync(store, [upstream()], [*NEED, "cowsay"], ["amd64"], log=lambda _m: None)
    after = {k: v for k, v in tree_state(store).items() if k.startswith(first.id + "/")}
    assert second.id > first.id and before == after
    result = CliRunner().invoke(cli, ["mirror", "packages", "ls", "--json", "--store", str(store)])
    rows = json.loads(result.stdout)
    assert [r["id"] for r in rows] == [first.id, second.id]
    assert [r["current"] for r in rows] == [False, True]
    # Prune keeps the current one and what it references; the first one's distribution is gone, and the
    # OS image made from it for network installs.
    for snap_id in (first.id, second.id):
        (image.image_dir(store, snap_id)).mkdir(parents=True)
        (image.image_dir(store, snap_id) / image.RECORD).write_text("{}")
    result = CliRunner().invoke(
        cli, ["mirror", "packages", "prune", "--keep", "1", "--json", "--store", str(store)]
    )
    assert json.loads(result.stdout) == {"dropped": [first.id]}
    assert not (apt_snapshots.published_tree(store) / "dists" / first.id).exists()
    assert apt_snapshots.current(store) == second.id
    assert not image.image_dir(store, first.id).exists() and image.image_dir(store, second.id).exists()


def test_bad_upstream_signature_publishes_nothing(synced: tuple[Path, apt_snapshots.SnapshotInfo]) -> None:
    store, _ = synced
    before, current = tree_state(store), apt_snapshots.current(store)
    # Only the security archive's key is pinned: bookworm's Release has no good signature by it.
    with pytest.raises(UserError, match=r"upstream debian \(http.* bookworm\)"):
        apt_snapshots.sync(
            store, [upstream(key_fingerprints=[SECURITY_KEY])], NEED, ["amd64"], log=lambda _m: None
        )
    assert tree_state(store) == before and apt_snapshots.current(store) == current


def test_pinned_key_missing_from_the_keyring_is_named(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"upstream debian: pinned key 0{40} .* is not in"):
        apt_snapshots.sync(
            tmp_path, [upstream(key_fingerprints=["0" * 40])], NEED, ["amd64"], log=lambda _m: None
        )


def test_a_package_no_upstream_has_is_named_and_nothing_published(
    synced: tuple[Path, apt_snapshots.SnapshotInfo],
) -> None:
    store, _ = synced
    before, current = tree_state(store), apt_snapshots.current(store)
    with pytest.raises(
        UserError, match="package no-such-package-sovinfra is needed but no upstream has it: deb"
    ):
        apt_snapshots.sync(
            store, [upstream()], [*NEED, "no-such-package-sovinfra"], ["amd64"], log=lambda _m: None
        )
    assert tree_state(store) == before and apt_snapshots.current(store) == current
    assert "no-such-package" not in json.dumps([r.id for r in apt_snapshots.listing(store)])


def test_a_sync_killed_midway_leaves_the_current_snapshot_serving(
    synced: tuple[Path, apt_snapshots.SnapshotInfo], tmp_path: Path
) -> None:
    store, _ = synced
    current = apt_snapshots.current(store)
    assert current
    before = tree_state(store)
    code = (
        "import sys; from pathlib import Path; from sovinfra.mirror import apt_snapshots as a;"
        "from tests.integration.test_apt_snapshots import upstream;"
        f"a.sync(Path({str(store)!r}), [upstream()], ['hello', 'cowsay', 'nginx'], ['amd64'])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    # Kill it as it works: after it reports its first step, mid-download or mid-publish.
    assert proc.stdout is not None
    readline(proc.stdout, 120)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert apt_snapshots.current(store) == current
    assert {k: v for k, v in tree_state(store).items() if k in before} == before
    policy = apt_reads(store, current, tmp_path)
    assert "Candidate:" in policy
    # The next sync completes (aptly's database survived the kill).
    info = apt_snapshots.sync(store, [upstream()], NEED, ["amd64"], log=lambda _m: None)
    assert apt_snapshots.current(store) == info.id


def _files(store: Path) -> dict[str, bytes]:
    return {rel: (store / rel).read_bytes() for rel in bundle_files.collect(store)}


def test_bundle_carries_the_snapshots_byte_identical_split_for_fat(
    synced: tuple[Path, apt_snapshots.SnapshotInfo], tmp_path: Path
) -> None:
    store, _ = synced
    bundle = tmp_path / "usb"
    export = ["mirror", "export", str(bundle), "--store", str(store), "--part-size", str(1 << 20)]
    result = CliRunner().invoke(cli, export)
    assert result.exit_code == 0, result.output
    carried = [str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file()]
    # The public key travels; the private key (keys/gnupg) stays on the connected side.
    assert "files/keys/site.gpg" in carried and not any(p.startswith("files/keys/gnupg") for p in carried)
    assert any(".part001" in p for p in carried)  # files above the part size were split
    assert all(p.stat().st_size <= 1 << 20 for p in (bundle / "files").rglob("*") if p.is_file())

    empty = tmp_path / "site-store"
    result = CliRunner().invoke(cli, ["mirror", "import", str(bundle), "--store", str(empty)])
    assert result.exit_code == 0, result.output
    assert _files(empty) == _files(store)
    assert apt_snapshots.current(empty) == apt_snapshots.current(store)
    assert not (empty / "staging").exists() or not any((empty / "staging").iterdir())
    # The imported tree is what a host's apt reads: signed, current, complete.
    current = apt_snapshots.current(empty)
    assert current and "Candidate: 2." in apt_reads(empty, current, tmp_path / "apt")


def test_tampered_or_cut_bundle_is_refused_and_resumes(
    synced: tuple[Path, apt_snapshots.SnapshotInfo], tmp_path: Path
) -> None:
    store, _ = synced
    bundle = tmp_path / "usb"
    assert CliRunner().invoke(cli, ["mirror", "export", str(bundle), "--store", str(store)]).exit_code == 0
    target = tmp_path / "site-store"
    deb = sorted((bundle / "files").rglob("*.deb"))[-1]
    original = deb.read_bytes()
    deb.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))  # same size, one bit flipped
    result = CliRunner().invoke(cli, ["mirror", "import", str(bundle), "--store", str(target)])
    assert result.exit_code == 2 and deb.name in result.output and "does not match" in result.output
    assert apt_snapshots.current(target) is None and not (target / "packages").exists()

    # Put back, take another file away: the second try stops there, the third resumes and completes.
    deb.write_bytes(original)
    gone = sorted((bundle / "files" / "packages" / "snapshots").glob("*.json"))[-1]  # verified last
    kept = gone.read_bytes()
    gone.unlink()
    result = CliRunner().invoke(cli, ["mirror", "import", str(bundle), "--store", str(target)])
    assert result.exit_code == 2 and "missing from the bundle" in result.output
    assert apt_snapshots.current(target) is None
    staged = [p for p in (target / "staging").rglob("*.deb")]
    assert staged  # verified work kept for the next try
    gone.write_bytes(kept)
    result = CliRunner().invoke(cli, ["mirror", "import", str(bundle), "--store", str(target)])
    assert result.exit_code == 0, result.output
    assert _files(target) == _files(store)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory without a log line per request on the test's stderr."""

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def flat_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[apt_plan.Upstream]:
    """A signed flat repository in NVIDIA's layout, served over http on loopback: two versions of a driver
    whose packages depend on each other at their exact version and on Debian's `hello`."""
    from sovinfra.lab import nvidia_repo

    root = tmp_path_factory.mktemp("flat")
    repo, home = root / "repo", root / "gnupg"
    repo.mkdir()
    for version in ("1.0-1", "2.0-1"):
        for pkg in (
            nvidia_repo.Package(
                "fake-driver", version, "driver", depends=(f"fake-lib (= {version})", "hello")
            ),
            nvidia_repo.Package("fake-lib", version, "library"),
            nvidia_repo.Package("fake-broken", version, "broken", depends=("no-such-package-anywhere",)),
            # A dependency on a virtual package, met by what provides it (podman's container-network-stack).
            nvidia_repo.Package("fake-tool", version, "tool", depends=("fake-net-stack",)),
            nvidia_repo.Package("fake-netplug", version, "plugins", provides=("fake-net-stack (= 2)",)),
        ):
            nvidia_repo.build_deb(pkg, repo, epoch=1_700_000_000)
    fingerprint = nvidia_repo.signing_key(home)
    nvidia_repo.index_repo(repo, home, fingerprint, "flat test")
    sitekey.stop_agent(home)
    # Served from this process on a port it bound itself (never chosen free, then taken by another).
    handler = functools.partial(QuietHandler, directory=str(repo))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        entry = {
            "name": "vendor",
            "url": f"http://127.0.0.1:{port}",
            "flat": True,
            # The key from the vendor's server, as NVIDIA publishes its own (the lab uses a key file).
            "keyring": f"http://127.0.0.1:{port}/{nvidia_repo.key_file_name(fingerprint)}",
            "key_fingerprints": [fingerprint],
        }
        yield apt_plan.parse_upstreams([entry], "test")[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_flat_upstream_gives_the_pinned_version_with_dependencies_across_upstreams(
    tmp_path: Path, flat_upstream: apt_plan.Upstream
) -> None:
    store = tmp_path / "store"
    pinned = [apt_plan.Requirement("fake-driver", "1.0", "gpu1: nvidia_driver_version")]
    info = apt_snapshots.sync(
        store, [upstream(), flat_upstream], [], ["amd64"], log=lambda _m: None, versioned=pinned
    )
    keys = set(apt_snapshots.packages_of(apt_snapshots.Aptly(store), f"site-{info.id}"))
    # The pinned version and its own dependency at the same version (aptly 1.5 resolves none in a flat
    # mirror), and `hello`, which only Debian has: the closure crossed upstreams.
    assert {"fake-driver_1.0-1_amd64", "fake-lib_1.0-1_amd64"} <= keys
    assert not any(k.startswith(("fake-driver_2.0", "fake-lib_2.0")) for k in keys)
    assert any(k.startswith("hello_") for k in keys)
    assert info.upstreams == ["debian-bookworm", "vendor"]
    verified = apt_snapshots.Aptly(store)("snapshot", "verify", f"site-{info.id}", what="verify")
    assert "All dependencies are satisfied" in verified
    # A version the upstream lacks is named with the setting that asked for it; nothing is published.
    gone = [apt_plan.Requirement("fake-driver", "3.0", "gpu2: nvidia_driver_version")]
    with pytest.raises(UserError, match=r"fake-driver 3\.0 is needed \(gpu2: nvidia_driver_version\)"):
        apt_snapshots.sync(
            store, [upstream(), flat_upstream], [], ["amd64"], log=lambda _m: None, versioned=gone
        )
    assert apt_snapshots.current(store) == info.id and len(apt_snapshots.listing(store)) == 1
    # A virtual dependency: the package that provides it comes along.
    tool = [apt_plan.Requirement("fake-tool", "1.0", "gpu2: extra")]
    virtual = apt_snapshots.sync(
        store, [upstream(), flat_upstream], [], ["amd64"], log=lambda _m: None, versioned=tool
    )
    provided = set(apt_snapshots.packages_of(apt_snapshots.Aptly(store), f"site-{virtual.id}"))
    assert {"fake-tool_1.0-1_amd64", "fake-netplug_1.0-1_amd64"} <= provided
    # A dependency no upstream has: named, nothing published.
    broken = [apt_plan.Requirement("fake-broken", "1.0", "gpu2: nvidia_driver_version")]
    with pytest.raises(
        UserError, match=r"dependency no-such-package-anywhere of the site's packages is in no"
    ):
        apt_snapshots.sync(
            store, [upstream(), flat_upstream], [], ["amd64"], log=lambda _m: None, versioned=broken
        )
    assert apt_snapshots.current(store) == virtual.id and len(apt_snapshots.listing(store)) == 2


def test_an_update_arrives_whole_so_apt_can_install_the_newest_versions(tmp_path: Path) -> None:
    """Debian's bookworm and its security suite, and a need (usrmerge) that depends on perl without naming
    it: perl comes from bookworm by dependency while the security suite updates perl-base (priority
    required, taken by name). Without the siblings' round, perl pins the older perl-base and apt cannot
    install usrmerge from the snapshot; with it, the newest perl and perl-base belong together."""
    store = tmp_path / "store"
    security = upstream(
        name="debian-security",
        url=os.environ.get("SOVINFRA_LAB_DEBIAN_SECURITY_MIRROR", "http://deb.debian.org/debian-security"),
        distributions=["bookworm-security"],
        key_fingerprints=[SECURITY_KEY],
    )
    said: list[str] = []
    info = apt_snapshots.sync(store, [upstream(), security], ["usrmerge"], ["amd64"], log=said.append)
    aptly = apt_snapshots.Aptly(store)
    stanzas = apt_snapshots._stanzas(aptly, apt_snapshots.site_name(info.id))
    assert apt_plan.held_back(stanzas) == [], said
    assert not [line for line in said if line.startswith("warning")], said
    newest = {
        name: max((Version(s.version) for s in stanzas if s.name == name), default=None)
        for name in ("perl", "perl-base", "libperl5.36")
    }
    assert newest["perl"] == newest["perl-base"] == newest["libperl5.36"], newest
    # The real apt, reading the snapshot as a host does, installs it with the newest versions.
    tmp = tmp_path / "apt"
    apt_reads(store, info.id, tmp)
    plan = subprocess.run(
        ["apt-get", *apt_options(tmp), "-s", "install", "usrmerge"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert plan.returncode == 0, plan.stdout[-2000:] + plan.stderr[-2000:]
    assert f"Inst perl-base ({newest['perl-base']} " in plan.stdout, plan.stdout[-2000:]
