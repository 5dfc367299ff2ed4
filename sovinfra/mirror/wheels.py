"""The site's wheelhouse: wheels in the store, served by the mirror as a PEP 503 simple index.

Nodes' pip points only at the mirror (`--index-url http://<mirror>/simple/`). Wheels come in on the control
node: copied from a file, or built once there with `pip wheel` (an engine with no binary wheel on PyPI is
compiled once, not on every node). Layout: <store>/wheels/files/*.whl and <store>/wheels/simple/<project>/.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from sovinfra.errors import UserError
from sovinfra.mirror.store import hash_file

# PEP 427: {distribution}-{version}(-{build})?-{python}-{abi}-{platform}.whl
_WHEEL = re.compile(
    r"^(?P<name>[A-Za-z0-9_.]+)-(?P<version>[A-Za-z0-9_.!+]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$"
)


# Node architecture (as `uname -m` and Ansible's facts name it) -> the wheel platforms it installs.
PLATFORMS = {
    arch: (f"manylinux2014_{arch}", f"manylinux_2_17_{arch}", f"manylinux_2_28_{arch}")
    for arch in ("x86_64", "aarch64")
}


def parse_target(text: str) -> tuple[str, str]:
    """A node's "X.Y[:ARCH]" (architecture x86_64 when not given) -> (python, arch); ValueError naming it."""
    python, _, arch = text.partition(":")
    arch = arch or "x86_64"
    if arch not in PLATFORMS:
        raise ValueError(f"no wheels for architecture {arch!r} (known: {', '.join(PLATFORMS)})")
    if not python.replace(".", "").isdigit() or python.count(".") != 1:
        raise ValueError(f"{text!r} is not a Python X.Y[:ARCH]")
    return python, arch


def download_argv(python_version: str, arch: str, dest: Path) -> list[str]:
    """pip download of binary wheels for another node's Python and architecture (nothing is built)."""
    argv = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
            "--python-version", python_version, "--implementation", "cp", "--dest", str(dest)]  # fmt: skip
    for platform in PLATFORMS[arch]:
        argv += ["--platform", platform]
    return argv


def normalize(name: str) -> str:
    """PEP 503 project name normalization."""
    return re.sub(r"[-_.]+", "-", name).lower()


def project_of(filename: str) -> str:
    match = _WHEEL.match(filename)
    if not match:
        raise ValueError(f"{filename}: not a wheel file name (name-version-python-abi-platform.whl)")
    return normalize(match["name"])


def index_pages(files: dict[str, str]) -> dict[str, str]:
    """Wheel file -> sha256 in, relative path -> HTML out: the root page and one page per project."""
    projects: dict[str, list[str]] = {}
    for filename in sorted(files):
        projects.setdefault(project_of(filename), []).append(filename)

    def page(title: str, links: list[str]) -> str:
        body = "\n".join(links)
        return (
            f'<!DOCTYPE html>\n<html><head><meta name="pypi:repository-version" content="1.0">'
            f"<title>{html.escape(title)}</title></head><body>\n{body}\n</body></html>\n"
        )

    pages = {
        "index.html": page("sovinfra wheelhouse", [f'<a href="{p}/">{p}</a><br>' for p in sorted(projects)])
    }
    for project, names in projects.items():
        links = [
            f'<a href="/wheels/{html.escape(n)}#sha256={files[n]}">{html.escape(n)}</a><br>' for n in names
        ]
        pages[f"{project}/index.html"] = page(f"Links for {project}", links)
    return pages


def files_dir(store_root: Path) -> Path:
    return store_root / "wheels" / "files"


def listing(store_root: Path) -> dict[str, str]:
    folder = files_dir(store_root)
    return {p.name: hash_file(p) for p in sorted(folder.glob("*.whl"))} if folder.is_dir() else {}


def write_index(store_root: Path) -> Path:
    """Rewrite the simple index from the wheels present (a new tree, then swapped in)."""
    simple = store_root / "wheels" / "simple"
    staging = store_root / "wheels" / ".simple.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    for rel, text in index_pages(listing(store_root)).items():
        target = staging / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    old = store_root / "wheels" / ".simple.old"
    shutil.rmtree(old, ignore_errors=True)
    if simple.exists():
        simple.rename(old)
    staging.rename(simple)
    shutil.rmtree(old, ignore_errors=True)
    return simple


def index_if_changed(store_root: Path) -> bool:
    """Write the index only when the wheels present call for a different one (re-publishing is a no-op)."""
    simple = store_root / "wheels" / "simple"
    wanted = index_pages(listing(store_root))
    current = {str(p.relative_to(simple)): p.read_text() for p in simple.rglob("*.html")}
    if current == wanted:
        return False
    write_index(store_root)
    return True


def build_dir(store_root: Path) -> Path:
    """Where builds happen (the wheels' filesystem, so a finished wheel is renamed into place)."""
    return store_root / "wheels"


def add(
    store_root: Path,
    sources: list[str],
    log: Callable[[str], None],
    python: Sequence[str] = (sys.executable,),
    targets: Sequence[tuple[str, str]] = (),
) -> list[str]:
    """Copy wheel files, or build wheels for requirements/source folders with `python`'s pip (the control
    node's own, or another Python's that sees build_dir at the same path), or, for `targets` (python,
    arch), download their binary wheels with their dependencies; then re-index."""
    folder = files_dir(store_root)
    folder.mkdir(parents=True, exist_ok=True)
    added: list[str] = []
    with tempfile.TemporaryDirectory(dir=build_dir(store_root)) as tmp:
        built = Path(tmp)
        for source in sources:
            if source.endswith(".whl"):
                path = Path(source)
                if not path.is_file():
                    raise UserError(f"{source}: no such wheel file")
                try:
                    project_of(path.name)
                except ValueError as exc:
                    raise UserError(str(exc)) from exc
                shutil.copy2(path, built / path.name)
                continue
            build = [*python, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(built), source]
            commands = [
                (f"download for Python {version} on {arch}", [*download_argv(version, arch, built), source])
                for version, arch in targets
            ] or [("build", build)]
            for what, argv in commands:
                log(f"wheels for {source}: {what} ...")
                proc = subprocess.run(argv, capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    raise UserError(f"{source}: pip failed ({what}):\n{proc.stderr.strip()[-2000:]}")
        for wheel in sorted(built.glob("*.whl")):
            os.replace(wheel, folder / wheel.name)  # same filesystem: atomic
            added.append(wheel.name)
    write_index(store_root)
    return added
