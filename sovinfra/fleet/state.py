"""What a host runs, read in one round trip (for `sovinfra lock` and `sovinfra drift`); read-only.

Packages and holds, the Python distributions in sovinfra's venvs, sha256 of the files the roles manage,
the state of sovinfra's units, the loaded driver and kernel, `dpkg --verify` of the managed packages and,
with `rehash`, every cached model re-hashed against the manifest it was verified with.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from pyinfra.api import FactBase

from sovinfra.fleet.connection import HostRead, read_all
from sovinfra.inventory.model import Inventory

MARK = "==> sovinfra-state "
# Files the roles write whose content is the site's intent (secrets inside are hashed, never read out).
MANAGED_FILES = (
    "/etc/sovinfra/*/*",
    "/etc/systemd/system/sovinfra-*",
    "/etc/apt/sources.list.d/sovinfra-*",
    "/etc/apt/preferences.d/sovinfra-*",
    "/etc/apt/apt.conf.d/*sovinfra*",
    "/etc/pip.conf",
    "/etc/default/sovinfra-*",
    "/etc/cdi/nvidia.yaml",
    "/etc/containerd/conf.d/*.toml",
    "/etc/containerd/certs.d/*/hosts.toml",
    "/etc/containers/registries.conf.d/*sovinfra*",
    "/etc/docker/registry/config.yml",
    "/etc/nvidia-container-runtime/config.toml",
    "/etc/systemd/timesyncd.conf.d/*sovinfra*",
    "/etc/nginx/sites-available/sovinfra-*",
    # node_exporter's and Prometheus' settings (conffiles of Debian's packages, the roles' own content)
    "/etc/default/prometheus-node-exporter",
    "/etc/default/prometheus",
    "/etc/prometheus/prometheus.yml",
    "/etc/prometheus/rules/*",
    # the site endpoint's (HAProxy's conffile; the API keys in it are hashed here, never read out)
    "/etc/haproxy/haproxy.cfg",
)
# Written by a role only when absent, the operator's from then on (a conffile dpkg sees as modified):
# neither hashed nor verified.
OPERATOR_FILES = frozenset({"/etc/containerd/config.toml"})
# Written from the lock itself (its package pins): the packages are judged, not this file.
LOCK_PINS = "/etc/apt/preferences.d/sovinfra-lock"
# Unit file states whose active state is steady; a static unit (a timer's oneshot) comes and goes.
STEADY = {"enabled", "disabled", "masked"}
UNITS = ("sovinfra-*", "containerd.service", "docker.service", "nvidia-persistenced.service", "nginx.service",
         "docker-registry.service", "nvidia-dcgm.service", "prometheus-node-exporter.service",
         "prometheus.service", "haproxy.service")  # fmt: skip


@dataclass
class HostState:
    packages: dict[str, str] = field(default_factory=dict)  # installed name -> version
    holds: list[str] = field(default_factory=list)
    venvs: dict[str, dict[str, str]] = field(default_factory=dict)  # venv -> {distribution: version}
    venv_pythons: dict[str, str] = field(default_factory=dict)  # venv -> its Python, "3.11"
    files: dict[str, str] = field(default_factory=dict)  # path -> sha256
    units: dict[str, str] = field(default_factory=dict)  # unit -> "active enabled"
    driver: str = ""  # the loaded driver's version, as nvidia-smi reports it
    kernel: str = ""
    arch: str = ""  # uname -m: which platform's wheels its venvs hold
    gpus: list[str] = field(default_factory=list)  # GPU UUIDs, as `nvidia-smi -L` lists them
    machine: str = ""  # the board's DMI product UUID: survives a re-image, unlike host keys and machine-id
    modified: list[str] = field(default_factory=list)  # dpkg --verify lines
    models: dict[str, list[str]] = field(default_factory=dict)  # snapshot dir -> problems ([] sound)


def state_command(venv_paths: list[str], cache_dir: str, verify: list[str], rehash: bool) -> str:
    q = shlex.quote
    python = q(f"{venv_paths[0]}/bin/python") if venv_paths else "python3"
    venvs = " ".join(q(v) for v in venv_paths)
    parts = [
        f"echo '{MARK}packages'; dpkg-query -W -f='${{db:Status-Abbrev}} ${{Package}} ${{Version}}\\n'",
        f"echo '{MARK}holds'; apt-mark showhold 2>/dev/null",
        f"echo '{MARK}venvs'; for v in {venvs} /opt/sovinfra/engines/*; do "
        f'for d in "$v"/lib/python3*/site-packages/*.dist-info; do p="${{d%/site-packages/*}}"; '
        f'[ -d "$d" ] && echo "$v ${{d##*/}} ${{p##*/python}}"; '
        "done; done",
        f'echo \'{MARK}files\'; for f in {" ".join(MANAGED_FILES)}; do [ -f "$f" ] && sha256sum "$f"; done',
        f"echo '{MARK}units'; systemctl list-unit-files --no-legend --plain {' '.join(UNITS)} 2>/dev/null"
        ' | while read -r u enabled _; do echo "$u $(systemctl is-active "$u") $enabled"; done',
        f"echo '{MARK}driver'; nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null"
        " | head -n 1",
        f"echo '{MARK}kernel'; uname -r",
        f"echo '{MARK}arch'; uname -m",
        f"echo '{MARK}gpus'; nvidia-smi -L 2>/dev/null",
        # The board's DMI uuid; a container's board is its manager's uuid for it (PID 1's container_uuid).
        f"echo '{MARK}machine'; cat /sys/class/dmi/id/product_uuid 2>/dev/null || "
        "tr '\\0' '\\n' < /proc/1/environ | sed -n 's/^container_uuid=//p'",
        f"echo '{MARK}modified'; dpkg --verify {' '.join(q(p) for p in verify)} 2>/dev/null"
        if verify
        else "",
        f"echo '{MARK}models'; for m in {q(cache_dir)}/models--*/.sovinfra/ready-*; do "
        '[ -f "$m" ] || continue; s="${m%/.sovinfra/*}/snapshots/${m##*/ready-}"; echo "snapshot $s"; '
        f'{python} -m sovinfra.mirror.cache_check "$s" {"--full" if rehash else ""} 2>&1; done',
    ]
    return "sh -c " + q("; ".join(p for p in parts if p) + "; true")


def parse(lines: list[str]) -> HostState:
    state = HostState()
    section = ""
    snapshot = ""
    for line in lines:
        if line.startswith(MARK):
            section = line[len(MARK) :].strip()
            continue
        words = line.split()
        if not words:
            continue
        if section == "packages" and len(words) == 3 and words[0][1:2] == "i":  # ii, hi: installed
            state.packages[words[1].split(":")[0]] = words[2]
        elif section == "holds":
            state.holds.append(words[0])
        elif section == "venvs" and len(words) in (2, 3) and words[1].endswith(".dist-info"):
            name, _, version = words[1][: -len(".dist-info")].rpartition("-")
            state.venvs.setdefault(words[0], {})[name.lower().replace("_", "-")] = version
            if len(words) == 3:
                state.venv_pythons[words[0]] = words[2]
        elif section == "files" and len(words) == 2 and words[1] != LOCK_PINS:
            state.files[words[1]] = words[0]
        elif section == "units" and len(words) >= 3 and words[2] in STEADY:
            state.units[words[0]] = f"{words[1]} {words[2]}"
        elif section == "driver":
            state.driver = words[0]
        elif section == "kernel":
            state.kernel = words[0]
        elif section == "arch":
            state.arch = words[0]
        elif section == "machine":
            state.machine = words[0].lower()
        elif section == "gpus" and "(UUID: " in line:
            state.gpus.append(line.split("(UUID: ", 1)[1].rstrip(")").strip())
        elif section == "modified":
            state.modified.append(line.strip())
        elif section == "models" and words[0] == "snapshot":
            snapshot = words[1]
            state.models[snapshot] = []
        elif section == "models" and snapshot:
            state.models[snapshot].append(line.strip().removeprefix("model cache: "))
    return state


class HostStateFact(FactBase):
    """HostState of the host (see state_command for the arguments)."""

    def command(self, venv_paths: list[str], cache_dir: str, verify: list[str], rehash: bool) -> str:
        return state_command(venv_paths, cache_dir, verify, rehash)

    def process(self, output: list[str]) -> HostState:
        return parse(output)


def read_states(
    inv: Inventory, hosts: list[str], venv: str, cache_dir: str, verify: list[str], rehash: bool
) -> dict[str, HostRead]:
    """HostState of every host, read in parallel."""
    args = {"venv_paths": [venv], "cache_dir": cache_dir, "verify": verify, "rehash": rehash}
    return read_all(inv, hosts, HostStateFact, kwargs=args)
