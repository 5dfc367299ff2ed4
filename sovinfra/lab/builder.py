"""A build box for another Debian release: the lab's base of that release in a container with build tools.

Wheels with compiled parts are built for one Python: the control node's pip cannot build
llama-cpp-python for Debian 13's Python 3.13. The box is the release's cached lab base with an upper layer
of its own (build tools and pip's cache stay there between builds), on the control node's network and
trust store (its CA bundle, read-only): it builds what the control node would, for the other Python.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from sovinfra import paths
from sovinfra.commands import run
from sovinfra.lab import base

# What building a Python package with C/C++ parts needs on Debian.
BUILD_PACKAGES = ("build-essential", "cmake", "python3-dev", "python3-pip", "python3-venv")
MARKER = "etc/sovinfra-builder"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
CONTROL_CA = "/etc/ssl/certs/sovinfra-control-node.crt"


def control_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def upper_dir(release: str) -> Path:
    return paths.lab_cache_dir() / f"builder-{release}" / "upper"


def _argv(release: str, root: Path, binds: list[Path]) -> list[str]:
    return [
        "systemd-nspawn",
        "--quiet",
        "-D", str(root),
        f"--overlay={root}:{upper_dir(release)}:/",
        "--register=no",
        "--keep-unit",
        "--pipe",
        f"--bind-ro={CA_BUNDLE}:{CONTROL_CA}",
        f"--setenv=PIP_CERT={CONTROL_CA}",
        "--setenv=PIP_DISABLE_PIP_VERSION_CHECK=1",
        *(f"--bind={b}" for b in binds),
    ]  # fmt: skip


def python(release: str, binds: list[Path], log: Callable[[str], None] = print) -> list[str]:
    """The release's python3 in the box, as an argv prefix; `binds` are seen at the same paths inside.
    The first use installs the build tools."""
    root = base.ensure_base(release, log)
    upper = upper_dir(release)
    recipe = ",".join(BUILD_PACKAGES)
    marker = upper / MARKER
    if not marker.is_file() or marker.read_text().strip() != recipe:
        log(f"preparing the {release} build box ({', '.join(BUILD_PACKAGES)}) ...")
        upper.mkdir(parents=True, exist_ok=True)
        packages = " ".join(BUILD_PACKAGES)
        install = f"apt-get update -q && apt-get install -q -y --no-install-recommends {packages}"
        run([*_argv(release, root, []), "--setenv=DEBIAN_FRONTEND=noninteractive", "sh", "-c", install])
        marker.write_text(recipe + "\n")
    return [*_argv(release, root, binds), "python3"]
