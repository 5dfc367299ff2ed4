"""`sovinfra lab nvml build` and `sovinfra lab gpu HOST PROFILE`: the simulated GPUs of the lab."""

from __future__ import annotations

import subprocess
from pathlib import Path

import click

from sovinfra import paths
from sovinfra.errors import UserError
from sovinfra.lab import config

# Where lab GPU nodes read their profile (the health_agent role points SOVINFRA_NVML_PROFILE here).
NODE_PROFILE = config.GPU_PROFILE


@click.group()
def nvml() -> None:
    """The NVML simulator (libnvidia-ml.so.1 reading a GPU profile)."""


@nvml.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), help="output directory")
def build(out_dir: Path | None) -> None:
    """Compile the simulator; prints the library's path (select it with LD_LIBRARY_PATH)."""
    from sovinfra.lab import nvmlsim

    click.echo(nvmlsim.build(out_dir))


@click.command()
@click.argument("host")
@click.argument("profile")
def gpu(host: str, profile: str) -> None:
    """Give lab HOST the GPUs of PROFILE (a shipped name or a file) without restarting it."""
    from sovinfra.lab import nvmlsim, state

    path = nvmlsim.profile_path(profile)
    nvmlsim.validate_profile(path, nvmlsim.build())
    lab = state.load()
    if host not in lab.hosts:
        known = ", ".join(sorted(lab.hosts)) or "none: the lab is down"
        raise UserError(f"no lab host {host!r} (lab hosts: {known})")
    # Swapping hardware is the lab's business (the boundary Ansible never manages), so the lab
    # writes the file itself, over its own pinned ssh.
    lab_dir = paths.lab_dir()
    cmd = [
        "ssh", "-i", str(lab_dir / "id_ed25519"), "-o", f"UserKnownHostsFile={lab_dir / 'known_hosts'}",
        "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", f"root@{lab.hosts[host].address}",
        f"install -D -m 0644 /dev/stdin {NODE_PROFILE}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, input=path.read_bytes(), capture_output=True, check=False)
    if proc.returncode != 0:
        raise UserError(f"{host}: could not write {NODE_PROFILE}: {proc.stderr.decode().strip()}")
    click.echo(f"{host}: GPUs now from {path.name}")
