"""Container image references, parsed the way the runtimes read them (distribution's reference grammar).

`nvcr.io/nvidia/cuda:12.8.1-base-ubuntu24.04@sha256:...` is registry `nvcr.io`, repository
`nvidia/cuda`, tag, digest. A first component without a dot or colon (and not `localhost`) is a
repository on docker.io, where one-component names live under `library/`. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DOCKER_HUB = "docker.io"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DOMAIN = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9-]+)*(?::[0-9]+)?$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class ImageRef:
    registry: str
    repository: str
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        """registry/repository: the image's full name, the same on the site registry."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def parse(text: str) -> ImageRef:
    """Parse a reference; ValueError says what is wrong with it."""
    ref = text.strip()
    if not ref:
        raise ValueError("empty image reference")
    digest = ""
    if "@" in ref:
        ref, digest = ref.split("@", 1)
        if not DIGEST.match(digest):
            raise ValueError(f"{text}: digest must be sha256:<64 lowercase hex>, got {digest!r}")
    tag = ""
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        ref, tag = ref.rsplit(":", 1)
        if not _TAG.match(tag):
            raise ValueError(f"{text}: invalid tag {tag!r}")
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
        if not _DOMAIN.match(registry):
            raise ValueError(f"{text}: invalid registry {registry!r}")
    else:
        registry, path = DOCKER_HUB, ref
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not _PATH.match(path):
        raise ValueError(f"{text}: invalid repository {path!r} (lowercase letters, digits, . _ - and /)")
    return ImageRef(registry, path, tag, digest)


def pinned(text: str) -> ImageRef:
    """A reference that must carry its digest (inventory images): a tag alone can move."""
    ref = parse(text)
    if not ref.digest:
        raise ValueError(f"{text}: no digest; pin the image as {ref.name}@sha256:<digest> (a tag can move)")
    return ref
