"""The site's package signing key: made once on the connected side, its private half never leaves it.

Layout under the store root:
  keys/gnupg/   the key's GnuPG home (0700): never shipped, never exported in a bundle
  keys/site.gpg the public key, binary: what apt's `signed-by` reads on every host
  keys/site.asc the same, armored, for people
"""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sovinfra.errors import UserError


@dataclass(frozen=True)
class SiteKey:
    fingerprint: str
    homedir: Path
    public: Path
    created: bool


def homedir(store: Path) -> Path:
    return store / "keys" / "gnupg"


def public_keyring(store: Path) -> Path:
    return store / "keys" / "site.gpg"


def gpg(home: Path, *args: str, input_text: str | None = None) -> str:
    """gpg in batch mode on one home; a failure raises naming the command."""
    proc = subprocess.run(
        ["gpg", "--batch", "--quiet", "--homedir", str(home), *args],
        input=input_text,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise UserError(f"gpg {' '.join(args[:2])} failed in {home}: {proc.stderr.strip()[-600:]}")
    return proc.stdout


def stop_agent(home: Path) -> None:
    """End the gpg-agent gpg started for this home (it would outlive the command otherwise)."""
    subprocess.run(
        ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True, check=False
    )


def fingerprint(store: Path) -> str | None:
    home = homedir(store)
    if not (home / "pubring.kbx").exists():
        return None
    # The public listing: the secret one would start a gpg-agent just to answer.
    rows = gpg(home, "--with-colons", "--list-keys").splitlines()
    fprs = [r.split(":")[9] for r in rows if r.startswith("fpr:")]
    return fprs[0] if fprs else None


def ensure(store: Path) -> SiteKey:
    """The site key, made on first use: ed25519 (Debian 13's apt refuses SHA1-bound and weak keys)."""
    home = homedir(store)
    existing = fingerprint(store)
    created = existing is None
    if existing is None:
        home.mkdir(parents=True, exist_ok=True)
        os.chmod(home, 0o700)
        uid = f"sovinfra site packages ({socket.gethostname()})"
        try:
            gpg(
                home,
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--quick-generate-key",
                uid,
                "ed25519",
                "sign",
                "never",
            )
        finally:
            stop_agent(home)
        existing = fingerprint(store)
        if existing is None:
            raise UserError(f"gpg made no key in {home}")
    public = public_keyring(store)
    exported = subprocess.run(
        ["gpg", "--batch", "--homedir", str(home), "--export", existing], capture_output=True, check=True
    ).stdout
    if not public.exists() or public.read_bytes() != exported:
        tmp = public.with_suffix(".tmp")
        tmp.write_bytes(exported)
        os.replace(tmp, public)
        public.with_suffix(".asc").write_text(gpg(home, "--armor", "--export", existing))
    return SiteKey(existing, home, public, created)
