"""Every file that tells a host where to fetch from, read in one round trip (for `sovinfra audit`)."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

MARK = "==> sovinfra-file "
# apt sources, keys and proxies; pip; the engines' Hugging Face endpoint; container registries; NTP.
PATTERNS = (
    "/etc/apt/sources.list",
    "/etc/apt/sources.list.d/*.list",
    "/etc/apt/sources.list.d/*.sources",
    "/etc/apt/apt.conf",
    "/etc/apt/apt.conf.d/*",
    "/etc/environment",
    "/etc/pip.conf",
    "/etc/xdg/pip/pip.conf",
    "/root/.pip/pip.conf",
    "/root/.config/pip/pip.conf",
    "/etc/default/sovinfra-models",
    "/etc/containerd/config.toml",
    "/etc/containerd/certs.d/*/hosts.toml",
    "/etc/docker/daemon.json",
    "/etc/containers/registries.conf",
    "/etc/containers/registries.conf.d/*.conf",
    "/etc/systemd/timesyncd.conf",
    "/etc/systemd/timesyncd.conf.d/*.conf",
)
SOURCES_COMMAND = (
    f"for f in {' '.join(PATTERNS)}; do "
    f'[ -f "$f" ] && [ -r "$f" ] && {{ echo "{MARK}$f"; cat "$f"; echo; }}; done; true'
)


def split_files(lines: list[str]) -> dict[str, str]:
    """The command's output back into {path: content}."""
    files: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines:
        if line.startswith(MARK):
            current = files.setdefault(line[len(MARK) :], [])
        elif current is not None:
            current.append(line)
    return {path: "\n".join(body) for path, body in files.items()}


class HostSources(FactBase):
    """{path: content} of every fetch-source configuration file on the host."""

    def command(self) -> str:
        return "sh -c " + shlex.quote(SOURCES_COMMAND)

    def process(self, output: list[str]) -> dict[str, str]:
        return split_files(output)
