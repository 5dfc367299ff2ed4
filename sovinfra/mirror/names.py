"""What may enter the mirror: repo ids, revisions, file paths and formats (pure validation)."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from sovinfra.errors import UserError

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")

# Weights, configs, tokenizers and docs. Pickle-based weights run code when loaded: opt-in only.
ALLOWED_SUFFIXES = {
    ".safetensors",
    ".gguf",
    ".json",
    ".txt",
    ".md",
    ".model",
    ".tiktoken",
    ".jinja",
    ".yaml",
    ".yml",
    ".vocab",
    ".spm",
    ".bpe",
    ".csv",
    ".tsv",
    ".png",
    ".jpg",
    ".jpeg",
}
ALLOWED_NAMES = {
    ".gitattributes",
    "LICENSE",
    "LICENSE.txt",
    "NOTICE",
    "README",
    "USE_POLICY.md",
    "merges.txt",
}
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}
# Formats the Hub keeps in LFS; anything this large is LFS too.
LFS_SUFFIXES = {".safetensors", ".gguf", ".bin", ".pt", ".pth", ".pkl", ".ckpt", ".model", ".msgpack", ".h5"}
LFS_MIN_SIZE = 10 * 1024 * 1024


def check_repo_id(repo: str, where: str = "--repo") -> str:
    if not REPO_ID.match(repo) or ".." in repo:
        raise UserError(f"{where}: {repo!r} is not a repo id (ORG/NAME: letters, digits, . _ -)")
    return repo


def check_revision(rev: str, where: str = "--revision") -> str:
    if not REVISION.match(rev) or ".." in rev:
        raise UserError(f"{where}: {rev!r} is not a valid revision name")
    return rev


def check_path(path: str, where: str) -> str:
    """A repo-relative POSIX path: no traversal, no absolute paths, nothing hidden in .git."""
    bad = (
        not path
        or path.startswith("/")
        or "\\" in path
        or "\0" in path
        or any(ord(c) < 32 for c in path)
        or any(part in ("", ".", "..") for part in path.split("/"))
        or path.split("/")[0] == ".git"
    )
    if bad:
        raise UserError(f"{where}: unsafe file path {path!r} (absolute, traversal or control characters)")
    return path


def check_format(path: str, allow_pickle: bool, where: str) -> None:
    name = PurePosixPath(path).name
    suffix = PurePosixPath(path).suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise UserError(
                f"{where}: {path}: pickle-based weights run code when loaded; "
                "convert to safetensors, or pass --allow-pickle"
            )
        return
    if suffix not in ALLOWED_SUFFIXES and name not in ALLOWED_NAMES:
        raise UserError(
            f"{where}: {path}: not an allowed model file format (safetensors, GGUF, JSON, text, "
            "tokenizer files)"
        )


def is_lfs(path: str, size: int) -> bool:
    return PurePosixPath(path).suffix.lower() in LFS_SUFFIXES or size >= LFS_MIN_SIZE
