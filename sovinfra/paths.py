"""Where the project's files and the lab's state live."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The directory holding ansible.cfg, playbooks/ and roles/.

    SOVINFRA_PROJECT wins; else the checkout this package was installed from (editable install);
    else the current directory.
    """
    env = os.environ.get("SOVINFRA_PROJECT")
    if env:
        return Path(env).resolve()
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "playbooks").is_dir() and (checkout / "roles").is_dir():
        return checkout
    return Path.cwd()


def lab_dir() -> Path:
    return Path(os.environ.get("SOVINFRA_LAB_DIR", "/var/lib/sovinfra/lab"))


def lab_cache_dir() -> Path:
    """The cached base root filesystem survives `lab down`: building it costs a minute."""
    return Path(os.environ.get("SOVINFRA_LAB_CACHE", "/var/cache/sovinfra/lab"))


def lab_inventory_dir() -> Path:
    return project_root() / "inventory" / "lab"
