"""`lab up`, `lab down`, `lab status`: the lab's lifecycle over its state file."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sovinfra import paths
from sovinfra.commands import run
from sovinfra.errors import UserError
from sovinfra.lab import (
    aptproxy,
    base,
    cgroups,
    config,
    hosts,
    network,
    nvidia_repo,
    nvidia_upstream,
    processes,
    state,
    vm,
)
from sovinfra.lab import inventory as lab_inventory

Log = Callable[[str], None]


def _require_root() -> None:
    if os.geteuid() != 0:
        raise UserError("the lab needs root (it creates a bridge, nft rules and containers)")


def _ensure_client_key(lab_dir: Path) -> str:
    key = lab_dir / "id_ed25519"
    if not key.exists():
        lab_dir.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sovinfra-lab", "-f", str(key)])
    return key.with_suffix(".pub").read_text()


def owner_problem(current: state.LabState, here: str) -> str | None:
    """Why this checkout may not change the lab (another checkout brought it up and it still has hosts)."""
    if current.owner and current.owner != here and current.hosts:
        return (
            f"the lab is owned by the checkout at {current.owner} (its tests or its inventory/lab use it); "
            "run this there, or pass --force to take it over"
        )
    return None


def _check_owner(current: state.LabState, force: bool) -> None:
    problem = owner_problem(current, str(paths.project_root()))
    if problem and not force:
        raise UserError(problem)


def up(
    nodes: int,
    air_gapped: bool | None = None,
    log: Log = print,
    force: bool = False,
    release: str | None = None,
) -> state.LabState:
    """Boot or complete the lab; `air_gapped` and `release` None keep the running lab's (a new lab:
    proxied, Debian 12). A host whose release changes boots blank from the other release's base."""
    _require_root()
    if not 1 <= nodes <= config.MAX_NODES:
        raise UserError(f"--nodes must be between 1 and {config.MAX_NODES}, got {nodes}")
    if release is not None and release not in config.RELEASE_CHOICES:
        raise UserError(f"--release must be one of {', '.join(config.RELEASE_CHOICES)}, got {release!r}")
    lab_dir = paths.lab_dir()
    current = state.load()
    _check_owner(current, force)
    current.owner = str(paths.project_root())
    net = config.subnet()
    if current.subnet and current.subnet != str(net):
        raise UserError(f"a lab on {current.subnet} is up; run `sovinfra lab down` before changing subnet")
    current.subnet, current.gateway = str(net), config.gateway()
    if air_gapped is not None:
        current.air_gapped = air_gapped
    if release is not None:
        current.release = release
    plans = config.plan_hosts(nodes, current.release)
    if current.air_gapped and {p.release for p in plans} != {config.DEFAULT_RELEASE}:
        # The site's package snapshot is made from one Debian release's archive (model_mirror's upstreams).
        raise UserError(
            f"--release {current.release}: an air-gapped lab runs {config.DEFAULT_RELEASE} only (the site "
            "package snapshot holds one release); use --apt-proxy for other releases"
        )
    state.save(current)  # record intent first: a crash from here on is cleaned up by `down`

    bases = {r: base.ensure_base(r, log) for r in sorted({p.release for p in plans})}
    network.ensure_bridge(current.gateway, net.prefixlen)
    network.ensure_nft(str(net))
    if current.air_gapped:
        # Nothing on the gateway for the hosts: packages come from the site snapshot on the mirror host.
        aptproxy.stop(current.apt_proxy_pid)
        current.apt_proxy_pid = 0
    else:
        current.apt_proxy_pid = aptproxy.ensure(current.gateway, current.apt_proxy_pid)
    state.save(current)

    client_key = _ensure_client_key(lab_dir)
    wanted = {p.name for p in plans}
    for name in sorted(set(current.hosts) - wanted):
        log(f"stopping {name} (not in a {nodes}-node lab)")
        hosts.stop(name, current.hosts[name].pid)
        hosts.remove_files(name)
        del current.hosts[name]
    known_hosts = []
    started = []
    for plan in plans:
        entry = current.hosts.get(plan.name)
        if entry and entry.release != plan.release:
            log(f"{plan.name}: {entry.release} -> {plan.release} (boots blank from the {plan.release} base)")
            hosts.stop(plan.name, entry.pid)
            hosts.remove_files(plan.name)
            entry = None
        host_key = hosts.prepare(plan, net.prefixlen, client_key)
        known_hosts.append(f"{plan.address} {host_key}")
        if entry and processes.alive(entry.pid, plan.machine):
            entry.groups = list(plan.groups)  # a lab from an older checkout gets today's groups
            continue
        pid = hosts.start(plan, bases[plan.release])
        current.hosts[plan.name] = state.HostState(
            plan.name, plan.address, list(plan.groups), pid, plan.release
        )
        state.save(current)
        started.append((plan, pid))
    known_hosts += [f"{line} {vm.MARK}" for line in vm.pinned_lines(current)]  # `lab vm`'s, kept
    (lab_dir / "known_hosts").write_text("\n".join(known_hosts) + "\n")
    for plan, pid in started:
        hosts.wait_ssh(plan, pid)
        log(f"{plan.name} {plan.address} up")
    repos = standin_repos()
    if current.air_gapped:
        current.nvidia_upstream_pid = nvidia_upstream.ensure(repos.root, current.nvidia_upstream_pid)
    else:
        nvidia_upstream.stop(current.nvidia_upstream_pid)
        current.nvidia_upstream_pid = 0
    state.save(current)
    lab_inventory.write(current, paths.lab_inventory_dir(), lab_dir, repos)
    return current


def wipe(name: str, log: Log = print, force: bool = False) -> None:
    """The lab's disaster: the host's disk is replaced. Its upper layer (everything converged onto it, its
    caches, its ssh host key) is destroyed and it boots blank from the base image; the lab enrolls the new
    host key as a site would after verifying it out of band."""
    _require_root()
    current = state.load()
    _check_owner(current, force)
    entry = current.hosts.get(name)
    if entry is None:
        raise UserError(f"no lab host {name!r} (have: {', '.join(sorted(current.hosts)) or 'none'})")
    plan = next(p for p in config.plan_hosts(config.MAX_NODES, current.release) if p.name == name)
    # The simulated GPUs are the host's hardware, not its disk: they stay what they were.
    gpus = hosts.host_dir(name) / "upper" / config.GPU_PROFILE.lstrip("/")
    profile = gpus.read_bytes() if gpus.is_file() else None
    hosts.stop(name, entry.pid)
    hosts.remove_files(name)
    lab_dir = paths.lab_dir()
    host_key = hosts.prepare(plan, config.subnet().prefixlen, _ensure_client_key(lab_dir))
    if profile is not None:
        gpus.parent.mkdir(parents=True, exist_ok=True)
        gpus.write_bytes(profile)
    known = lab_dir / "known_hosts"
    lines = [line for line in known.read_text().splitlines() if not line.startswith(plan.address + " ")]
    known.write_text("\n".join([*lines, f"{plan.address} {host_key}"]) + "\n")
    entry.pid = hosts.start(plan, base.ensure_base(plan.release, log))
    state.save(current)
    hosts.wait_ssh(plan, entry.pid)
    log(f"{name} {plan.address} wiped: booted blank from the base image")


def standin_repos() -> nvidia_repo.StandinRepos:
    """NVIDIA's repositories as the lab has them: stand-ins carrying the NVML simulator."""
    from sovinfra.lab import nvmlsim

    # Containers run this host's kernel: the stand-in headers package is for it.
    return nvidia_repo.ensure(paths.lab_cache_dir() / "nvidia", nvmlsim.build(), os.uname().release)


@dataclass
class Leftovers:
    processes: list[int]
    cgroups: list[Path]
    bridge: bool
    nft_table: bool

    def empty(self) -> bool:
        return not (self.processes or self.cgroups or self.bridge or self.nft_table)


def leftovers() -> Leftovers:
    return Leftovers(
        processes=hosts.stray_pids()
        + processes.find(lambda args: any(aptproxy.MARK in a for a in args) or nvidia_upstream.MARK in args),
        cgroups=cgroups.leftovers(),
        bridge=network.bridge_exists(),
        nft_table=network.nft_table_exists(),
    )


def down(log: Log = print, force: bool = False) -> Leftovers:
    """Remove everything the lab made; works from the state file and, after a crash, by name."""
    _require_root()
    current = state.load()
    _check_owner(current, force)
    if current.vms or current.libvirt_started or vm.leftover_domains():
        vm.down(log)
    for name, host in current.hosts.items():
        hosts.stop(name, host.pid)
        log(f"{name} stopped")
    for pid in hosts.stray_pids():
        processes.stop(pid, config.MACHINE_PREFIX)
    aptproxy.stop(current.apt_proxy_pid)
    nvidia_upstream.stop(current.nvidia_upstream_pid)
    processes.reap_children()
    cgroups.remove()
    network.teardown()
    hosts_root = paths.lab_dir() / "hosts"
    if hosts_root.is_dir():
        for child in hosts_root.iterdir():
            hosts.remove_files(child.name)
    lab_inventory.remove(paths.lab_inventory_dir())
    state.remove()
    return leftovers()


def egress_packets() -> int | None:
    """Packets lab hosts sent to addresses outside the lab (None while this lab has no hosts)."""
    return network.egress_packets() if state.load().hosts else None


@dataclass
class HostStatus:
    name: str
    address: str
    groups: list[str]
    running: bool
    ssh: bool
    release: str


def status() -> list[HostStatus]:
    current = state.load()
    result = []
    for host in current.hosts.values():
        running = processes.alive(host.pid, config.MACHINE_PREFIX + host.name)
        result.append(
            HostStatus(
                host.name,
                host.address,
                host.groups,
                running,
                running and hosts.ssh_answers(host.address),
                host.release,
            )
        )
    return result


def is_up() -> bool:
    return any(h.running for h in status())


def ssh_argv(host: str) -> list[str]:
    """ssh to lab HOST as root, as the lab's inventory does: its key, its pinned host keys only."""
    lab_dir = paths.lab_dir()
    return [
        "ssh", "-n", "-F", "/dev/null", "-o", "BatchMode=yes", "-i", str(lab_dir / "id_ed25519"),
        "-o", f"UserKnownHostsFile={lab_dir / 'known_hosts'}", "-o", "StrictHostKeyChecking=yes",
        f"root@{state.load().hosts[host].address}",
    ]  # fmt: skip
