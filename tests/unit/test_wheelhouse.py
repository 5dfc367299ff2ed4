"""The agent's wheels in the site wheelhouse, for every node architecture (real pip downloads, installs)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sovinfra.agent import wheelhouse
from sovinfra.mirror import wheels


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("3.11", ("3.11", "x86_64")),
        ("3.12:aarch64", ("3.12", "aarch64")),
        ("3.11:x86_64", ("3.11", "x86_64")),
    ],
)
def test_targets_parse(text: str, target: tuple[str, str]) -> None:
    assert wheelhouse.parse_target(text) == target


@pytest.mark.parametrize("text", ["3.11:ppc64le", "3:aarch64", "three.eleven", "3.11.4"])
def test_bad_targets_are_refused_by_name(text: str) -> None:
    with pytest.raises(SystemExit, match="wheelhouse:"):
        wheelhouse.parse_target(text)


def test_an_arm64_node_gets_arm64_binary_wheels_once(tmp_path: Path) -> None:
    fetched = wheelhouse._dep_wheels(tmp_path, "3.11", "aarch64")
    assert len(fetched) == len(wheelhouse.AGENT_DEPS), fetched
    binary = [w.name for w in tmp_path.glob("*.whl") if "-none-any" not in w.name]
    assert binary and all(name.endswith("_aarch64.whl") for name in binary), binary
    assert any(name.lower().startswith("pyyaml-") for name in binary)
    assert wheelhouse._dep_wheels(tmp_path, "3.11", "aarch64") == []  # cached: a re-converge fetches nothing
    # An x86_64 node of the same Python still needs its own PyYAML: the arm64 wheel does not count.
    assert wheelhouse._dep_wheels(tmp_path, "3.11", "x86_64") == [
        f"PyYAML=={_version('PyYAML')} for Python 3.11 on x86_64"
    ]


def _version(dist: str) -> str:
    from importlib import metadata

    return metadata.version(dist)


def test_the_agent_wheels_join_the_site_wheelhouse_and_install_hash_checked(tmp_path: Path) -> None:
    store = tmp_path / "store"
    changed = wheelhouse.build(store, list(wheelhouse.TARGETS))
    assert changed[0] == "sovinfra wheel" and len(changed) > 1, changed
    assert wheelhouse.build(store, list(wheelhouse.TARGETS)) == []  # a re-converge builds and fetches nothing
    files = wheels.listing(store)
    # Every supported node (Python, architecture) has a PyYAML wheel: the binary dependency.
    for target in wheelhouse.TARGETS:
        python, arch = wheelhouse.parse_target(target)
        tag = "cp" + python.replace(".", "")
        assert any(
            n.startswith("pyyaml-") and f"-{tag}-" in n and n.endswith(f"_{arch}.whl") for n in files
        ), target
    # One wheelhouse: the mirror's index lists the agent's projects beside any engine's.
    index = (store / "wheels" / "simple" / "index.html").read_text()
    assert all(f'href="{p}/"' in index for p in ("sovinfra", "click", "pyyaml", "nvidia-ml-py")), index
    lines = wheelhouse.requirements(wheels.files_dir(store))
    assert [line.split("==")[0] for line in lines] == ["sovinfra", "nvidia-ml-py", "click", "pyyaml"]
    # Every wheel of each pinned version is listed by its sha256 (pip takes the one matching the node).
    assert sum(line.count("--hash=sha256:") for line in lines) == len(files)
    for name, sha in files.items():
        assert any(f"--hash=sha256:{sha}" in line for line in lines), name

    # Real pip, offline, hash-checked, as a node's venv installs: it works, and a tampered wheel is refused.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    req = tmp_path / "agent.requirements"
    req.write_text("\n".join(lines) + "\n")
    found = str(wheels.files_dir(store))
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-index",
           "--find-links", found, "--require-hashes", "--no-deps", "-r", str(req)]  # fmt: skip
    # Not this checkout's sys.path either: its metadata would read as sovinfra already installed.
    alone = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(pip, env=alone, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    # From elsewhere than the checkout: the venv's own sovinfra, not this one.
    probe = [
        str(venv / "bin" / "python"),
        "-c",
        "import sovinfra.health, pynvml, click, yaml, sovinfra; print(sovinfra.__file__)",
    ]
    shown = subprocess.run(probe, cwd=tmp_path, env=alone, capture_output=True, text=True, check=False)
    assert shown.returncode == 0 and shown.stdout.startswith(str(venv)), shown
    sovinfra_wheel = next(wheels.files_dir(store).glob("sovinfra-*.whl"))
    with zipfile.ZipFile(sovinfra_wheel, "a") as whl:
        whl.writestr("sovinfra/tampered.py", "")
    refused = subprocess.run(
        [*pip, "--force-reinstall"], env=alone, capture_output=True, text=True, check=False
    )
    assert refused.returncode != 0
    assert "DO NOT MATCH THE HASHES" in refused.stderr and "sovinfra" in refused.stderr, refused.stderr
