"""Servers' ssh host keys made by sovinfra before their OS is installed, so the first connection to a
freshly installed server already checks its key (the installer plants the private half)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sovinfra.errors import UserError

KEY_NAME = "ssh_host_ed25519_key"


def store(roles_dir: Path) -> Path:
    """Root-only: the private halves wait here until the installer has planted them (the netboot role
    reads them from the same place: its `netboot_host_keys_dir`)."""
    from sovinfra.inventory import defaults

    return Path(str(defaults.role_defaults(roles_dir, "netboot")["netboot_host_keys_dir"]))


def ensure(roles_dir: Path, host: str) -> str:
    """The host's key pair (made once; a reinstall keeps it, as the machine is the same); its public line."""
    private = store(roles_dir) / host / KEY_NAME
    if not private.exists():
        private.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        store(roles_dir).chmod(0o700)
        done = subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{host}", "-f", str(private)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise UserError(f"{private}: ssh-keygen failed: {done.stderr.strip()}")
    return _public_line(private.with_suffix(".pub"))


def _public_line(public: Path) -> str:
    return public.read_text().split("\n")[0].strip()


def _name(address: str, port: int) -> str:
    """The host as known_hosts names it."""
    return address if port == 22 else f"[{address}]:{port}"


def made(roles_dir: Path, host: str) -> str | None:
    """The public line of the key sovinfra made for the host, if it made one."""
    public = store(roles_dir) / host / f"{KEY_NAME}.pub"
    return _public_line(public) if public.exists() else None


def pinned(known_hosts: Path, address: str, port: int, public: str) -> bool:
    """Whether known_hosts pins exactly this key (and no other) for the address."""
    if not known_hosts.exists():
        return False
    found = subprocess.run(
        ["ssh-keygen", "-F", _name(address, port), "-f", str(known_hosts)], capture_output=True, text=True
    )
    lines = [line for line in found.stdout.splitlines() if line and not line.startswith("#")]
    keys = {tuple(line.split()[1:3]) for line in lines}
    return keys == {tuple(public.split()[:2])}


def pin(known_hosts: Path, address: str, port: int, public: str) -> None:
    """Replace every key known_hosts holds for the address (hashed or not) by `public`."""
    name = _name(address, port)
    known_hosts.parent.mkdir(parents=True, exist_ok=True)
    if known_hosts.exists():
        subprocess.run(["ssh-keygen", "-q", "-R", name, "-f", str(known_hosts)], capture_output=True)
        known_hosts.with_name(known_hosts.name + ".old").unlink(missing_ok=True)
    kind, blob = public.split()[:2]
    with known_hosts.open("a") as out:
        out.write(f"{name} {kind} {blob}\n")
