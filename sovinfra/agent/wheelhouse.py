"""The agent's wheels in the site wheelhouse: sovinfra plus what `sovinfra health` imports.

Built on the control node into the site store's wheelhouse (`<store>/wheels/files`, the one `sovinfra
mirror wheels` fills), so hosts install the agent exactly as they install engines: from the mirror's
/simple/ index, hash-checked. Reproducible and cached: the sovinfra wheel is rebuilt only when its sources
change (fixed zip times: same sources, same bytes), and dependency wheels are fetched once, at the
versions the control node itself runs, for every node Python and architecture the site can have (the
set does not depend on which hosts a run touches, so a converge of some hosts never makes the wheelhouse
the mirror serves stale for the others). Prints JSON: what it changed, the targets it holds, and the
agent's requirements with every wheel's sha256 (`pip install --require-hashes`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from sovinfra import paths
from sovinfra.mirror import wheels
from sovinfra.mirror.store import hash_file

# What the agent imports on a node: no Ansible, no pyinfra.
AGENT_DEPS = ("nvidia-ml-py", "click", "PyYAML")
PLATFORMS = wheels.PLATFORMS
# The system Python of each OS release the roles support (Ubuntu 22.04, Debian 12, Ubuntu 24.04,
# Debian 13): the agent venv is made with it.
NODE_PYTHONS = ("3.10", "3.11", "3.12", "3.13")
TARGETS = tuple(f"{python}:{arch}" for python in NODE_PYTHONS for arch in PLATFORMS)


def source_digest(root: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in (root / "sovinfra").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in [root / "pyproject.toml", *files]:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _sovinfra_wheel(root: Path, dest: Path, stamp: Path) -> bool:
    digest = source_digest(root)
    if stamp.exists() and stamp.read_text() == digest and list(dest.glob("sovinfra-*.whl")):
        return False
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SOURCE_DATE_EPOCH": "315532800"}  # fixed zip times: same sources, same bytes
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
             "--wheel-dir", tmp, str(root)],
            check=True, env=env, cwd=tmp,
        )  # fmt: skip
        for old in dest.glob("sovinfra-*.whl"):
            old.unlink()
        for wheel in Path(tmp).glob("sovinfra-*.whl"):
            shutil.move(str(wheel), dest / wheel.name)
    stamp.write_text(digest)
    return True


def parse_target(text: str) -> tuple[str, str]:
    """A node's "X.Y[:ARCH]" (architecture x86_64 when not given) -> (python, arch)."""
    try:
        return wheels.parse_target(text)
    except ValueError as exc:
        raise SystemExit(f"wheelhouse: {exc}") from exc


def _stem(dist: str) -> str:
    """How wheel file names spell a project (PyYAML -> pyyaml, nvidia-ml-py -> nvidia_ml_py), lowered."""
    return dist.replace("-", "_").lower()


def _dep_wheels(dest: Path, python_version: str, arch: str = "x86_64") -> list[str]:
    fetched = []
    for dist in AGENT_DEPS:
        version = metadata.version(dist)
        tag = "cp" + python_version.replace(".", "")
        prefix = f"{_stem(dist)}-{version}-"
        have = [
            w for w in dest.glob("*.whl")
            if w.name.lower().startswith(prefix)
            and ("py3-none" in w.name or (f"-{tag}-" in w.name and w.name.endswith(f"_{arch}.whl")))
        ]  # fmt: skip
        if have:
            continue
        subprocess.run(
            [*wheels.download_argv(python_version, arch, dest), "--no-deps", f"{dist}=={version}"], check=True
        )
        fetched.append(f"{dist}=={version} for Python {python_version} on {arch}")
    return fetched


def requirements(dest: Path) -> list[str]:
    """The agent's distributions as pip hash-checking lines: each pinned, with every wheel's sha256 it has
    (one per node platform for a binary one; pip takes whichever matches the node)."""
    sovinfra = sorted(dest.glob("sovinfra-*.whl"))
    pins = [("sovinfra", sovinfra[0].name.split("-")[1])] if sovinfra else []
    pins += [(dist, metadata.version(dist)) for dist in AGENT_DEPS]
    lines = []
    for dist, version in pins:
        prefix = f"{_stem(dist)}-{version}-"
        files = sorted(w for w in dest.glob("*.whl") if w.name.lower().startswith(prefix))
        hashes = " ".join(f"--hash=sha256:{hash_file(w)}" for w in files)
        lines.append(f"{wheels.normalize(dist)}=={version} {hashes}")
    return lines


def build(store: Path, targets: list[str]) -> list[str]:
    """The agent's wheels for each node target "X.Y[:ARCH]" in the store's wheelhouse; what changed."""
    parsed = sorted({parse_target(t) for t in targets})
    dest = wheels.files_dir(store)
    dest.mkdir(parents=True, exist_ok=True)
    changes = []
    if _sovinfra_wheel(paths.project_root(), dest, store / "wheels" / ".sovinfra-source"):
        changes.append("sovinfra wheel")
    for version, arch in parsed:
        changes += _dep_wheels(dest, version, arch)
    if changes:
        wheels.write_index(store)  # the control store's own index (`mirror serve --dev`) follows its wheels
    return changes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("store", type=Path, help="the control node's site store (site_store)")
    args = parser.parse_args()
    changes = build(args.store, list(TARGETS))
    print(
        json.dumps(
            {
                "changed": changes,
                "targets": list(TARGETS),
                "requirements": requirements(wheels.files_dir(args.store)),
            }
        )
    )


if __name__ == "__main__":
    main()
