"""`sovinfra lab model`: the lab's tiny GGUF model into the mirror store, and the lab's inference services.

The services are written to inventory/lab/group_vars/inference.yml, pinned to the commit just imported,
with an API key encrypted by the lab's own vault password (lab_dir/vault-password), as a site keeps its keys.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from sovinfra import paths
from sovinfra.inventory import defaults
from sovinfra.lab import config, tiny_gguf

REPO = "sovinfra-lab/tiny-llama"
FILE = "tiny-llama-f32.gguf"
PORT = 8000
SERVICE = "tiny"


def vault_password_file() -> Path:
    return paths.lab_dir() / "vault-password"


def ensure_vault_password() -> Path:
    path = vault_password_file()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
    return path


def encrypt(plaintext: str, password_file: Path) -> str:
    from ansible.parsing.dataloader import DataLoader
    from ansible.parsing.vault import VaultLib, get_file_vault_secret

    secret = get_file_vault_secret(filename=str(password_file), loader=DataLoader())
    secret.load()
    return VaultLib([("default", secret)]).encrypt(plaintext).decode()


class _Vaulted(str):
    """Dumped as Ansible's `!vault |` literal."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Vaulted, lambda d, v: d.represent_scalar("!vault", str(v), style="|"))


def services_document(commit: str, api_key_ciphertext: str) -> dict[str, Any]:
    """The lab's inference group variables (pure)."""
    return {
        "inference_services": [
            {
                "name": SERVICE,
                "engine": "llama_cpp",
                "port": PORT,
                "repo": REPO,
                "revision": commit,
                "file": FILE,
                "served_model_name": SERVICE,
                "api_key": _Vaulted(api_key_ciphertext),
            }
        ],
        # What a 2-core lab carries with four streams of 32 tokens from a tiny model on CPU.
        "inference_slo_ttft_ms": 2000.0,
        "inference_slo_tpot_ms": 200.0,
    }


def write_services(inventory_dir: Path, commit: str, api_key: str | None = None) -> Path:
    """Pin the lab's service to COMMIT; keep the API key already there unless a new one is given."""
    password = ensure_vault_password()
    target = inventory_dir / "group_vars" / "inference.yml"
    ciphertext = _current_ciphertext(target)
    if api_key is not None or ciphertext is None:
        ciphertext = encrypt(api_key or secrets.token_urlsafe(24), password)
    text = "# Written by `sovinfra lab model`; rewritten on every run.\n" + yaml.dump(
        services_document(commit, ciphertext), Dumper=_Dumper, sort_keys=False
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, target)
    return target


def _current_ciphertext(path: Path) -> str | None:
    from sovinfra.inventory.model import VaultText, read_yaml

    if not path.exists():
        return None
    data = read_yaml(path) or {}
    for service in data.get("inference_services") or []:
        key = service.get("api_key")
        if isinstance(key, VaultText):
            return key.ciphertext
    return None


def engine_requirement(roles_dir: Path) -> str:
    """The llama.cpp engine release the inference role installs (its defaults are the one place it is set)."""
    version = defaults.role_defaults(roles_dir, "inference")["inference_llama_cpp_version"]
    return f"llama-cpp-python[server]=={version}"


def ensure_engine_wheels(store_root: Path, roles_dir: Path, log: Any, releases: Iterable[str]) -> list[str]:
    """Build the engine's wheels into the wheelhouse once for the Python of each Debian release the lab's
    nodes run (llama-cpp-python compiles: minutes on 2 cores): with the control node's pip when its Python
    is that release's, else in that release's build box."""
    from sovinfra.lab import builder
    from sovinfra.mirror import wheels

    requirement = engine_requirement(roles_dir)
    version = requirement.rsplit("==", 1)[1]
    added: list[str] = []
    for release in sorted(set(releases)):
        python = config.RELEASE_PYTHON[release]
        tag = "cp" + python.replace(".", "")
        if any(name.startswith(f"llama_cpp_python-{version}-{tag}-") for name in wheels.listing(store_root)):
            continue
        log(f"building {requirement} for Python {python} ({release}) into the wheelhouse (once) ...")
        argv = (
            [sys.executable]
            if python == builder.control_python()
            else builder.python(release, [wheels.build_dir(store_root)], log)
        )
        added += wheels.add(store_root, [requirement], log, python=argv)
    return added


def api_key(inventory_dir: Path) -> str:
    """The lab service's API key, decrypted (for tests and benchmarks)."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.parsing.vault import VaultLib, get_file_vault_secret

    ciphertext = _current_ciphertext(inventory_dir / "group_vars" / "inference.yml")
    if ciphertext is None:
        raise ValueError("no lab inference service: run `sovinfra lab model`")
    secret = get_file_vault_secret(filename=str(vault_password_file()), loader=DataLoader())
    secret.load()
    return VaultLib([("default", secret)]).decrypt(ciphertext.encode()).decode()


def import_model(store_root: Path, seed: int, revision: str, log: Any) -> str:
    """Write the model folder and import it; returns the commit."""
    from sovinfra.mirror import importer, publish
    from sovinfra.mirror.store import Store

    store = Store(store_root)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / FILE).write_bytes(tiny_gguf.model_bytes("sovinfra lab tiny llama", seed))
        (folder / "README.md").write_text(
            f"# {REPO}\n\nRandom weights (seed {seed}) in GGUF, made by `sovinfra lab model` for the lab.\n"
            "It speaks English words at random: for testing engines, services and load tests, not for use.\n"
        )
        commit = importer.import_folder(store, folder, REPO, revision, False, log)
    publish.publish(store)
    return commit
