"""The wheelhouse: wheels added on the control node, served as a PEP 503 index that real pip installs from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sovinfra.cli import cli
from sovinfra.mirror import publish, serve, wheels
from sovinfra.mirror.store import Store


def _project(folder: Path) -> Path:
    (folder / "sovinfra_probe").mkdir(parents=True)
    (folder / "sovinfra_probe" / "__init__.py").write_text("ANSWER = 42\n")
    (folder / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "Sovinfra.Probe"\nversion = "1.2.3"\n'
    )
    return folder


def test_index_pages_normalize_and_pin_hashes() -> None:
    pages = wheels.index_pages(
        {"Foo_Bar-1.0-py3-none-any.whl": "ab" * 32, "foo.bar-2.0-py3-none-any.whl": "cd" * 32}
    )
    assert set(pages) == {"index.html", "foo-bar/index.html"}
    assert f'href="/wheels/Foo_Bar-1.0-py3-none-any.whl#sha256={"ab" * 32}"' in pages["foo-bar/index.html"]
    assert 'href="foo-bar/"' in pages["index.html"]
    with pytest.raises(ValueError, match="not a wheel file name"):
        wheels.project_of("setup.py.whl")


def test_wheels_added_then_installed_by_pip_from_the_mirror(tmp_path: Path) -> None:
    store = tmp_path / "store"
    runner = CliRunner()
    # Built once here with pip (offline: the build backend is already installed).
    source = _project(tmp_path / "src")
    # pip's (inverted) spelling of --no-build-isolation; no index: nothing leaves this machine.
    env_pip = {"PIP_NO_BUILD_ISOLATION": "0", "PIP_NO_INDEX": "1"}
    added = runner.invoke(cli, ["mirror", "wheels", "add", "--store", str(store), str(source)], env=env_pip)
    assert added.exit_code == 0, added.output
    (wheel,) = (store / "wheels" / "files").glob("*.whl")
    assert wheel.name.startswith("sovinfra_probe-1.2.3")
    listed = runner.invoke(cli, ["mirror", "wheels", "ls", "--store", str(store), "--json"])
    assert [wheels.project_of(name) for name in json.loads(listed.output)] == ["sovinfra-probe"]
    bad = runner.invoke(cli, ["mirror", "wheels", "add", "--store", str(store), str(tmp_path / "nope.whl")])
    assert bad.exit_code == 2 and "nope.whl: no such wheel file" in bad.output

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = publish.publish(Store(store))  # an empty model mirror beside the wheelhouse
    with serve.DevServer(site, store / "blobs" / "sha256", wheels=store / "wheels") as server:
        pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps",
               "--index-url", f"{server.url}/simple/", "--no-cache-dir", "SOVINFRA-probe==1.2.3"]  # fmt: skip
        result = subprocess.run(pip, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    probe = [str(venv / "bin" / "python"), "-c", "import sovinfra_probe as p; print(p.ANSWER)"]
    answer = subprocess.run(probe, capture_output=True, text=True, check=True)
    assert answer.stdout.strip() == "42"


def test_wheels_for_other_nodes_are_downloaded_binary_with_their_dependencies(tmp_path: Path) -> None:
    """`--for X.Y:ARCH`: another node's binary wheels (an arm64 node's, a Python the control node lacks),
    dependencies included, nothing built; a bad target and a project with no such wheel are refused."""
    from importlib import metadata

    store = tmp_path / "store"
    runner = CliRunner()
    pyyaml = f"PyYAML=={metadata.version('PyYAML')}"
    added = runner.invoke(
        cli,
        ["mirror", "wheels", "add", "--store", str(store), "--for", "3.13:aarch64", "--for", "3.12", pyyaml],
    )
    assert added.exit_code == 0, added.output
    names = sorted(p.name for p in (store / "wheels" / "files").glob("*.whl"))
    assert [n for n in names if "-cp313-" in n and n.endswith("_aarch64.whl")], names
    assert [n for n in names if "-cp312-" in n and n.endswith("_x86_64.whl")], names
    assert not [n for n in names if "-cp311-" in n], names  # not this node's
    page = (store / "wheels" / "simple" / "pyyaml" / "index.html").read_text()
    assert page.count("#sha256=") == len(names)

    bad = runner.invoke(
        cli, ["mirror", "wheels", "add", "--store", str(store), "--for", "3.13:ppc64le", pyyaml]
    )
    assert bad.exit_code == 2 and "--for" in bad.output and "ppc64le" in bad.output
    # llama-cpp-python publishes no binary wheel on PyPI: said, not built, no traceback.
    none = runner.invoke(
        cli,
        [
            "mirror",
            "wheels",
            "add",
            "--store",
            str(store),
            "--for",
            "3.13:aarch64",
            "llama-cpp-python==0.3.16",
        ],
    )
    assert none.exit_code != 0 and "Traceback" not in none.output
    assert "llama-cpp-python==0.3.16: pip failed (download for Python 3.13 on aarch64)" in none.output
    assert sorted(p.name for p in (store / "wheels" / "files").glob("*.whl")) == names
