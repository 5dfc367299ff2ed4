"""Building the NVML simulator (nvmlsim.c) against NVIDIA's nvml.h from the pinned nvidia-nvml-dev wheel."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from sovinfra.errors import UserError

SOURCE_DIR = Path(__file__).resolve().parent
PROFILES_DIR = SOURCE_DIR.parent / "nvml_profiles"
LIBRARY = "libnvidia-ml.so.1"


def nvml_include_dir() -> Path:
    try:
        import nvidia  # namespace package from the nvidia-nvml-dev wheel
    except ImportError as exc:
        raise UserError("nvidia-nvml-dev is not installed (pip install 'sovinfra[lab]')") from exc
    for base in getattr(nvidia, "__path__", []):
        header = Path(base) / "cu13" / "include" / "nvml.h"
        if header.is_file():
            return header.parent
    raise UserError("nvml.h not found in the nvidia-nvml-dev package (expected nvidia/cu13/include/nvml.h)")


def _fingerprint(include: Path) -> str:
    digest = hashlib.sha256()
    for path in (SOURCE_DIR / "nvmlsim.c", include / "nvml.h"):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def default_out_dir() -> Path:
    return Path(os.environ.get("SOVINFRA_LAB_CACHE", "/var/cache/sovinfra/lab")) / "nvmlsim"


def build(out_dir: Path | None = None) -> Path:
    """Compile once per source/header version; returns the library's path."""
    out = out_dir or default_out_dir()
    include = nvml_include_dir()
    stamp = out / ".build-stamp"
    library = out / LIBRARY
    fingerprint = _fingerprint(include)
    if library.exists() and stamp.exists() and stamp.read_text() == fingerprint:
        return library
    if not shutil.which("gcc"):
        raise UserError("gcc is not installed (needed to build the NVML simulator)")
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{LIBRARY}.tmp"
    cmd = [
        "gcc", "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden",
        f"-I{include}", f"-Wl,-soname,{LIBRARY}", "-o", str(tmp), str(SOURCE_DIR / "nvmlsim.c"), "-lyaml",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        hint = " (install libyaml-dev)" if "yaml.h" in proc.stderr or "-lyaml" in proc.stderr else ""
        raise UserError(f"building the NVML simulator failed{hint}:\n{proc.stderr.strip()[-2000:]}")
    os.replace(tmp, library)
    stamp.write_text(fingerprint)
    return library


def profile_path(name_or_path: str) -> Path:
    """A shipped profile by name (healthy-8x-h100-sxm) or any profile file."""
    candidate = Path(name_or_path)
    if candidate.is_file():
        return candidate
    shipped = PROFILES_DIR / f"{name_or_path.removesuffix('.yml')}.yml"
    if shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in PROFILES_DIR.glob("*.yml")))
    raise UserError(f"GPU profile {name_or_path!r} not found (a file, or one of: {names})")


_CHECK = (
    "import ctypes, sys\n"
    "lib = ctypes.CDLL(sys.argv[1])\n"
    "lib.sovsim_last_error.restype = ctypes.c_char_p\n"
    "code = lib.nvmlInitWithFlags(0)\n"
    "print(code)\n"
    "print((lib.sovsim_last_error() or b'').decode())\n"
)


def validate_profile(profile: Path, library: Path) -> None:
    """Load the profile through the simulator itself (the one parser), in a throwaway process."""
    env = {**os.environ, "SOVINFRA_NVML_PROFILE": str(profile)}
    proc = subprocess.run(
        ["python3", "-c", _CHECK, str(library)], env=env, capture_output=True, text=True, check=False
    )
    lines = proc.stdout.splitlines()
    if proc.returncode != 0 or not lines:
        raise UserError(f"{profile}: could not be checked: {proc.stderr.strip()[-500:]}")
    code, message = int(lines[0]), (lines[1] if len(lines) > 1 else "")
    if code != 0 and "init_error injected" not in message:
        raise UserError(f"bad GPU profile: {message}")
