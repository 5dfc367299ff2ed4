"""The site lock: its format read back and refused entry by entry, the intent compared by `--check`, and
drift judged on recorded host reads."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sovinfra.errors import UserError
from sovinfra.fleet import state
from sovinfra.lock import build, drift, schema

COMMIT = "b" * 40
SHA = "a" * 64
PIN = f"org/tiny@{COMMIT}"
SNAPSHOT = f"/var/lib/sovinfra/hf-cache/models--org--tiny/snapshots/{COMMIT}"


def lock_doc() -> dict[str, Any]:
    return {
        "format": 1,
        "sovinfra": {"version": "0.1.0", "commit": "c" * 40},
        "packages_snapshot": "20261202T120000Z",
        "classes": {
            "gpu_nodes+inference": {
                "hosts": ["gpu1", "gpu2"],
                "packages": {
                    "libc6": {"version": "2.36-9+deb12u10", "sha256": SHA},
                    "nvidia-driver": {"version": "570.124.06-1", "sha256": ""},
                },
                "holds": ["nvidia-driver"],
                "nvidia": {"driver": {"requested": "570.124.06", "resolved": "570.124.06-1"}},
                "venvs": {"/opt/sovinfra/venv": {"click": {"version": "8.1.7", "sha256": SHA}}},
                "models": [PIN],
                "images": [],
            }
        },
        "models": {PIN: {"tiny.gguf": SHA}},
        "hosts": {
            h: {
                "class": "gpu_nodes+inference",
                "files": {"/etc/pip.conf": SHA},
                "units": {"sovinfra-inference-tiny.service": "active enabled"},
                "kernel": "6.1.0-28-amd64",
                "gpus": ["GPU-1", "GPU-2"],
                "machine": "4c4c4544-0000-1010-8000-b2c04f4e3232",
            }
            for h in ("gpu1", "gpu2")
        },
    }


def matching_state() -> state.HostState:
    return state.HostState(
        packages={"libc6": "2.36-9+deb12u10", "nvidia-driver": "570.124.06-1"},
        holds=["nvidia-driver"],
        venvs={"/opt/sovinfra/venv": {"click": "8.1.7"}},
        files={"/etc/pip.conf": SHA},
        units={"sovinfra-inference-tiny.service": "active enabled"},
        driver="570.124.06",
        kernel="6.1.0-28-amd64",
        gpus=["GPU-1", "GPU-2"],
        machine="4c4c4544-0000-1010-8000-b2c04f4e3232",
        models={SNAPSHOT: []},
    )


def test_round_trip_is_stable_and_sorted(tmp_path: Path) -> None:
    doc = lock_doc()
    path = tmp_path / schema.FILE_NAME
    schema.write(path, doc)
    first = path.read_text()
    assert schema.load(path) == doc
    reordered = dict(reversed(list(doc.items())))
    schema.write(path, reordered)
    assert path.read_text() == first  # the same lock always writes the same bytes
    keys = [line.split(":")[0] for line in first.splitlines() if line and not line.startswith((" ", "#"))]
    assert keys == sorted(keys)
    assert not list(tmp_path.glob(".*"))  # nothing left aside


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda d: d.pop("models"), "models: missing"),
        (lambda d: d.update(format=2), "format"),
        (lambda d: d.update(extra=1), ".extra: not a lock entry"),
        (
            lambda d: d["classes"]["gpu_nodes+inference"]["packages"]["libc6"].update(sha256="xyz"),
            "libc6.sha256",
        ),
        (lambda d: d["classes"]["gpu_nodes+inference"]["packages"].update(bad="1.0"), "packages.bad"),
        (
            lambda d: d["classes"]["gpu_nodes+inference"]["models"].append("org/other@" + "c" * 40),
            "models[1]",
        ),
        (lambda d: d["hosts"]["gpu1"].update({"class": "nope"}), "hosts.gpu1.class"),
        (lambda d: d["classes"]["gpu_nodes+inference"]["images"].append("nginx:latest"), "images[0]"),
        (lambda d: d["hosts"]["gpu2"]["files"].update({"/etc/x": 5}), "hosts.gpu2.files./etc/x"),
    ],
)
def test_hand_edits_are_refused_naming_the_entry(tmp_path: Path, change: Any, named: str) -> None:
    doc = lock_doc()
    change(doc)
    path = tmp_path / schema.FILE_NAME
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(schema.LockError) as caught:
        schema.load(path)
    assert str(path) in str(caught.value) and named in str(caught.value)


def test_truncated_and_missing_locks(tmp_path: Path) -> None:
    path = tmp_path / schema.FILE_NAME
    schema.write(path, lock_doc())
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(UserError, match=str(path)):
        schema.load(path)
    with pytest.raises(UserError, match="no lock; write one with `sovinfra lock`"):
        schema.load(tmp_path / "absent.lock")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_locks_fail_cleanly(data: st.DataObject) -> None:
    text = schema.dump(lock_doc())
    cut = data.draw(st.integers(0, len(text)))
    noise = data.draw(st.text(max_size=20))
    mutated = text[:cut] + noise + text[cut + data.draw(st.integers(0, 40)) :]
    try:
        schema.parse(mutated, "fuzzed.lock")
    except schema.LockError as exc:
        assert str(exc).startswith("fuzzed.lock")


@settings(max_examples=200, deadline=None)
@given(value=st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10))  # fmt: skip
def test_any_entry_replaced_by_junk_fails_cleanly(value: Any) -> None:
    for path in (("packages_snapshot",), ("classes", "gpu_nodes+inference", "venvs"), ("hosts", "gpu1")):
        doc = lock_doc()
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = copy.deepcopy(value)
        try:
            schema.validate(doc, "junk.lock")
        except schema.LockError as exc:
            assert str(exc).startswith("junk.lock")


def test_check_view_ignores_what_hosts_report() -> None:
    doc = lock_doc()
    view = build.intent_of(doc)
    assert view["classes"]["gpu_nodes+inference"] == {
        "hosts": ["gpu1", "gpu2"],
        "models": [PIN],
        "nvidia": {"driver": "570.124.06"},
        "images": [],
    }
    doc["classes"]["gpu_nodes+inference"]["packages"]["libc6"]["version"] = "2.36-9+deb12u11"
    doc["sovinfra"]["commit"] = "d" * 40
    assert build.intent_of(doc) == view  # host state and the project commit are drift's and git's business


def test_packages_index_gives_each_debs_sha256() -> None:
    index = (
        "Package: libc6\nVersion: 2.36-9\nDescription: x\n continued: line\nSHA256: " + SHA + "\n\n"
        "Package: nohash\nVersion: 1\n"
    )
    assert build.parse_packages_index(index) == {("libc6", "2.36-9"): SHA}


def test_clean_host_has_no_drift() -> None:
    assert drift.judge(lock_doc(), "gpu1", matching_state(), "/var/lib/sovinfra/hf-cache") == []


def test_each_kind_of_drift_is_named() -> None:
    found = matching_state()
    found.packages["libc6"] = "2.36-9+deb12u11"
    found.packages["telnet"] = "0.17"
    del found.packages["nvidia-driver"]
    found.holds = []
    found.files["/etc/pip.conf"] = "f" * 64
    found.units["sovinfra-inference-tiny.service"] = "inactive enabled"
    found.modified = [
        "??5?????? c /etc/ssh/sshd_config",
        "??5??????   /etc/pip.conf",
        "??5?????? c /etc/containerd/config.toml",  # the operator's: not drift
    ]
    found.models[SNAPSHOT] = ["/x/tiny.gguf: sha256 0 does not match the verified 1"]
    found.venvs["/opt/sovinfra/venv"]["click"] = "8.2.0"
    found.driver = "565.57.01"
    found.gpus = ["GPU-1", "GPU-9"]
    items = {(i.kind, i.what) for i in drift.judge(lock_doc(), "gpu2", found, "/var/lib/sovinfra/hf-cache")}
    assert items == {
        ("version", "package libc6"),
        ("extra", "package telnet"),
        ("missing", "package nvidia-driver"),
        ("modified", "hold nvidia-driver"),
        ("modified", "file /etc/pip.conf"),
        ("modified", "unit sovinfra-inference-tiny.service"),
        ("modified", "package file /etc/ssh/sshd_config"),  # the managed /etc/pip.conf is judged as a file
        ("modified", f"model {PIN}"),
        ("version", "venv /opt/sovinfra/venv: click"),
        ("version", "driver loaded"),
        ("modified", "gpus"),
    }


def test_host_missing_from_the_lock_and_model_missing_from_the_cache() -> None:
    found = matching_state()
    found.models = {}
    assert [
        (i.kind, i.what) for i in drift.judge(lock_doc(), "gpu1", found, "/var/lib/sovinfra/hf-cache")
    ] == [("missing", f"model {PIN}")]
    assert drift.judge(lock_doc(), "gpu9", found, "/c")[0].what == "lock entry"


def test_host_read_parses_every_section() -> None:
    output = [
        f"{state.MARK}packages",
        "ii  libc6 2.36-9",
        "rc  oldpkg 1.0",
        "hi  nvidia-driver 570.124.06-1",
        f"{state.MARK}holds",
        "nvidia-driver",
        f"{state.MARK}venvs",
        "/opt/sovinfra/venv llama_cpp_python-0.3.16.dist-info",
        f"{state.MARK}files",
        f"{SHA}  /etc/pip.conf",
        f"{state.MARK}units",
        "sovinfra-inference-tiny.service active enabled",
        "sovinfra-health.service activating static",
        f"{state.MARK}driver",
        "570.124.06",
        f"{state.MARK}kernel",
        "6.1.0",
        f"{state.MARK}machine",
        "4C4C4544-0000-1010-8000-B2C04F4E3232",
        f"{state.MARK}gpus",
        "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-5c1d2e3f-0000-1111-2222-333344445555)",
        f"{state.MARK}modified",
        "??5?????? c /etc/x",
        f"{state.MARK}models",
        f"snapshot {SNAPSHOT}",
        f"snapshot {SNAPSHOT}2",
        "model cache: /x: missing (expected sha256 1)",
    ]
    read = state.parse(output)
    assert read.packages == {"libc6": "2.36-9", "nvidia-driver": "570.124.06-1"}  # not the removed one
    assert read.holds == ["nvidia-driver"] and read.venvs == {
        "/opt/sovinfra/venv": {"llama-cpp-python": "0.3.16"}
    }
    assert read.files == {"/etc/pip.conf": SHA}
    assert read.units == {"sovinfra-inference-tiny.service": "active enabled"}  # not a timer's oneshot
    assert (read.driver, read.kernel, read.modified) == ("570.124.06", "6.1.0", ["??5?????? c /etc/x"])
    assert read.gpus == ["GPU-5c1d2e3f-0000-1111-2222-333344445555"]
    assert read.machine == "4c4c4544-0000-1010-8000-b2c04f4e3232"
    assert read.models == {SNAPSHOT: [], SNAPSHOT + "2": ["/x: missing (expected sha256 1)"]}


def test_requested_versions_follow_role_defaults_and_their_aliases(tmp_path: Path) -> None:
    from sovinfra import paths
    from sovinfra.inventory import defaults, model

    (tmp_path / "hosts.yml").write_text(
        yaml.safe_dump(
            {"all": {"children": {"gpu_nodes": {"hosts": {"g1": {"nvidia_driver_version": "580.65.06"}}}}}}
        )
    )
    inv = model.load(tmp_path)
    roles = paths.project_root() / "roles"
    # fabric_manager_version defaults to "{{ nvidia_driver_version | default('') }}": the host's driver.
    assert defaults.setting(inv, roles, "g1", "fabric_manager_version") == "580.65.06"
    assert defaults.setting(inv, roles, "g1", "cuda_toolkit_versions") == ["12.8.1"]
    assert defaults.setting(inv, roles, "g1", "no_such_variable") is None


def test_gate_names_new_kinds_of_host_and_what_the_mirror_lost(tmp_path: Path) -> None:
    from sovinfra.inventory import model
    from sovinfra.lock import gate
    from sovinfra.mirror.store import Store

    groups = {
        "gpu_nodes": {"hosts": {"gpu1": {}, "gpu2": {}}},
        "inference": {"hosts": {"gpu1": {}, "gpu2": {}}},
    }
    groups["storage"] = {"hosts": {"st1": {}}}
    (tmp_path / "inv").mkdir()
    (tmp_path / "inv" / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": groups}}))
    inv = model.load(tmp_path / "inv")
    store = tmp_path / "store"
    found = gate.problems(lock_doc(), inv, ["gpu1", "st1"], store)
    assert found[0].startswith("hosts.st1: no class 'storage'") and "--no-lock" in found[0]
    assert any(p.startswith("packages_snapshot: 20261202T120000Z is no longer") for p in found)
    assert any(p.startswith(f"models.{PIN}:") for p in found)
    (store / "packages" / "snapshots").mkdir(parents=True)
    (store / "packages" / "snapshots" / "20261202T120000Z.json").write_text("{}")
    commits = Store(store).repo_dir("org/tiny") / "commits"
    commits.mkdir(parents=True)
    (commits / f"{COMMIT}.json").write_text("{}")
    assert gate.problems(lock_doc(), inv, ["gpu1", "gpu2"], store) == []


def test_rebuild_refuses_another_machine_but_not_a_blank_one() -> None:
    from sovinfra.lock import rebuild

    entry = lock_doc()["hosts"]["gpu1"]
    assert rebuild.identity_problems(entry, matching_state()) == []
    blank = state.HostState(machine="4c4c4544-0000-1010-8000-b2c04f4e3232")  # no driver yet: no GPUs listed
    assert rebuild.identity_problems(entry, blank) == []
    other = matching_state()
    other.machine, other.gpus = "0000", ["GPU-7"]
    problems = rebuild.identity_problems(entry, other)
    assert len(problems) == 2 and "0000" in problems[0] and "GPU-7" in problems[1]
    assert not rebuild.outcome([]) and rebuild.outcome([{"exit_code": 0}])
    assert not rebuild.outcome([{"exit_code": 0}, {"exit_code": 1}])


def test_a_server_about_to_be_erased_must_not_answer_as_another_machine() -> None:
    from sovinfra.fleet.connection import HostRead
    from sovinfra.lock import rebuild

    entry = lock_doc()["hosts"]["gpu1"]
    mismatch = "SSH host key error (Host key for 10.0.0.11 does not match.)"
    # Blank, dead or off: nothing to compare, the BMC is all that names it.
    for error in ("timed out", "[Errno 111] Connection refused", "StrictPolicy: No host key for x found"):
        assert rebuild.erase_problems("gpu1", HostRead("gpu1", False, error=error), entry, False) == []
    # Another key than the pinned one: refused, with ssh's words.
    found = rebuild.erase_problems("gpu1", HostRead("gpu1", False, error=mismatch), entry, False)
    assert len(found) == 1 and "host key other than the one pinned" in found[0] and "10.0.0.11" in found[0]
    # ... unless the pin is already the key made for the install (a provision cut short: the old OS answers).
    assert rebuild.erase_problems("gpu1", HostRead("gpu1", False, error=mismatch), entry, True) == []
    # It answers with its pinned key: the lock's board and GPUs must be the ones it has.
    assert rebuild.erase_problems("gpu1", HostRead("gpu1", True, value=matching_state()), entry, False) == []
    other = matching_state()
    other.gpus = ["GPU-1", "GPU-9"]
    found = rebuild.erase_problems("gpu1", HostRead("gpu1", True, value=other), entry, True)
    assert len(found) == 1 and found[0].startswith("gpu1: GPUs GPU-1 GPU-9, the lock recorded")
    # No lock entry: the key is all there is to judge by.
    assert rebuild.erase_problems("gpu1", HostRead("gpu1", True, value=other), None, False) == []


def test_the_key_made_for_an_install_is_known_as_pinned_only_when_it_alone_is(tmp_path: Path) -> None:
    import subprocess

    from sovinfra.netboot import hostkeys

    keys = []
    for name in ("a", "b"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / name)], check=True
        )
        keys.append((tmp_path / f"{name}.pub").read_text().strip())
    known = tmp_path / "known_hosts"
    assert not hostkeys.pinned(known, "10.0.0.11", 22, keys[0])
    hostkeys.pin(known, "10.0.0.11", 22, keys[1])
    assert not hostkeys.pinned(known, "10.0.0.11", 22, keys[0])
    hostkeys.pin(known, "10.0.0.11", 22, keys[0])  # replaces the other
    assert hostkeys.pinned(known, "10.0.0.11", 22, keys[0])
    assert not hostkeys.pinned(known, "10.0.0.11", 2222, keys[0])  # another port is another entry
    with known.open("a") as out:  # a second key for the same name: not the planted key alone
        out.write("10.0.0.11 " + " ".join(keys[1].split()[:2]) + "\n")
    assert not hostkeys.pinned(known, "10.0.0.11", 22, keys[0])


def test_service_images_are_locked_by_digest_and_must_be_in_the_store(tmp_path: Path) -> None:
    from sovinfra.inventory import model as inventory_model
    from sovinfra.lab import image
    from sovinfra.mirror import images

    store = tmp_path / "store"
    (store / "blobs").mkdir(parents=True)
    raw = image.tar_layer(b"\0" * 1024)
    digest = image.write_archive([raw], tmp_path / "a.tar", "v1")
    pin = f"docker.io/site/vllm@{digest}"
    site_dir = tmp_path / "site"
    (site_dir / "group_vars").mkdir(parents=True)
    (site_dir / "hosts.yml").write_text("all:\n  children:\n    gpu_nodes:\n      hosts:\n        gpu1: {}\n")
    service = {"name": "v", "port": 8000, "repo": "o/m", "revision": "b" * 40, "engine": "vllm", "image": pin}
    (site_dir / "group_vars" / "gpu_nodes.yml").write_text(yaml.safe_dump({"inference_services": [service]}))
    inv = inventory_model.load(site_dir)
    with pytest.raises(
        schema.LockError, match=r"gpu_nodes.yml: inference_services\[0\]\.image: .*do not hold it"
    ):
        build.image_pins(inv, "gpu1", {i.reference for i in images.records(store)})
    images.add(store, str(tmp_path / "a.tar"), "docker.io/site/vllm:v1", lambda _m: None)
    assert build.image_pins(inv, "gpu1", {i.reference for i in images.records(store)}) == [pin]


WHEELS = {
    "pydantic_core-2.50.5-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl": "a" * 64,
    "pydantic_core-2.50.5-cp313-cp313-manylinux2014_x86_64.manylinux_2_17_x86_64.whl": "b" * 64,
    "pydantic_core-2.50.5-cp311-cp311-manylinux2014_aarch64.manylinux_2_17_aarch64.whl": "c" * 64,
}


@pytest.mark.parametrize(
    ("python", "arch", "sha"),
    [
        ("3.11", "x86_64", "a" * 64),
        ("3.13", "x86_64", "b" * 64),
        ("3.11", "aarch64", "c" * 64),
        ("3.12", "x86_64", ""),
    ],
)
def test_a_venv_is_locked_to_the_wheel_its_python_and_platform_install(
    python: str, arch: str, sha: str
) -> None:
    """A wheelhouse holds a file per node Python and architecture: the lock takes the one pip installs in
    that venv, or none (never another Python's, which pip's hash check would refuse)."""
    assert build.wheel_for(WHEELS, python, arch) == sha
    pure = {"click-8.1.7-py3-none-any.whl": "d" * 64}
    assert build.wheel_for(pure, python, arch) == "d" * 64


def test_the_host_read_names_each_venvs_python_and_the_architecture() -> None:
    lines = [
        f"{state.MARK}venvs",
        "/opt/sovinfra/engines/llama_cpp-0.3.16 pydantic_core-2.50.5.dist-info 3.13",
        "/opt/sovinfra/venv click-8.1.7.dist-info",  # a read from before pythons were named
        f"{state.MARK}arch",
        "x86_64",
    ]
    read = state.parse(lines)
    assert read.venvs["/opt/sovinfra/engines/llama_cpp-0.3.16"] == {"pydantic-core": "2.50.5"}
    assert read.venv_pythons == {"/opt/sovinfra/engines/llama_cpp-0.3.16": "3.13"} and read.arch == "x86_64"
