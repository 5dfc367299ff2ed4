"""Build the health agent's wheelhouse on the control node: sovinfra plus what `sovinfra health` imports.

Reproducible and cached: the sovinfra wheel is rebuilt only when its sources change (so a re-converge
copies nothing), and dependency wheels are fetched once per node Python version, at the versions the
control node itself runs, for each node architecture (an arm64 Grace node installs offline like an
x86_64 one). Prints "built ..." when it changed something (the role's changed_when).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from sovinfra import paths

# What the agent imports on a node: no Ansible, no pyinfra.
AGENT_DEPS = ("nvidia-ml-py", "click", "PyYAML")
# Node architecture (as `uname -m` and Ansible's facts name it) -> the wheel platforms it installs.
PLATFORMS = {
    arch: (f"manylinux2014_{arch}", f"manylinux_2_17_{arch}", f"manylinux_2_28_{arch}")
    for arch in ("x86_64", "aarch64")
}
STAMP = ".sovinfra-source"


def source_digest(root: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in (root / "sovinfra").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in [root / "pyproject.toml", *files]:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _sovinfra_wheel(root: Path, dest: Path) -> bool:
    digest = source_digest(root)
    stamp = dest / STAMP
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
    python, _, arch = text.partition(":")
    arch = arch or "x86_64"
    if arch not in PLATFORMS:
        raise SystemExit(f"wheelhouse: no wheels for architecture {arch!r} (known: {', '.join(PLATFORMS)})")
    if not python.replace(".", "").isdigit() or python.count(".") != 1:
        raise SystemExit(f"wheelhouse: {text!r} is not a Python X.Y[:ARCH]")
    return python, arch


def _dep_wheels(dest: Path, python_version: str, arch: str = "x86_64") -> list[str]:
    fetched = []
    for dist in AGENT_DEPS:
        version = metadata.version(dist)
        # Wheel file names normalise the project name (PyYAML -> PyYAML or pyyaml).
        stem = dist.replace("-", "_").lower()
        tag = "cp" + python_version.replace(".", "")
        prefix = f"{stem}-{version}-"
        have = [
            w for w in dest.glob("*.whl")
            if w.name.lower().startswith(prefix)
            and ("py3-none" in w.name or (f"-{tag}-" in w.name and w.name.endswith(f"_{arch}.whl")))
        ]  # fmt: skip
        if have:
            continue
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", python_version, "--implementation", "cp", "--dest", str(dest)]  # fmt: skip
        for platform in PLATFORMS[arch]:
            cmd += ["--platform", platform]
        subprocess.run([*cmd, f"{dist}=={version}"], check=True)
        fetched.append(f"{dist}=={version} for Python {python_version} on {arch}")
    return fetched


def build(dest: Path, targets: list[str]) -> list[str]:
    """Wheels for each node target "X.Y[:ARCH]"."""
    parsed = sorted({parse_target(t) for t in targets})
    dest.mkdir(parents=True, exist_ok=True)
    changes = []
    if _sovinfra_wheel(paths.project_root(), dest):
        changes.append("sovinfra wheel")
    for version, arch in parsed:
        changes += _dep_wheels(dest, version, arch)
    return changes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dest", type=Path)
    parser.add_argument(
        "--python",
        action="append",
        default=[],
        help="node Python X.Y[:ARCH], ARCH x86_64 or aarch64 (repeatable)",
    )
    args = parser.parse_args()
    changes = build(args.dest, args.python)
    print("built " + ", ".join(changes) if changes else "wheelhouse up to date")


if __name__ == "__main__":
    main()
