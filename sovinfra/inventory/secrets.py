"""Secrets in the inventory: plain, vaulted (`!vault`), or one `{{ var }}` reference to either.

Decrypted only in memory, only by the code that sends them (an API key, a BMC password)."""

from __future__ import annotations

import re
from typing import Any

from sovinfra.errors import UserError
from sovinfra.inventory.model import Inventory, VaultText, var_file

_VAR_REF = re.compile(r"^\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$")


def vault_lib(password_file: str | None) -> Any | None:
    """Ansible's VaultLib for the password file, or None without one."""
    if not password_file:
        return None
    from ansible.errors import AnsibleError
    from ansible.parsing.dataloader import DataLoader
    from ansible.parsing.vault import VaultLib, get_file_vault_secret

    try:
        secret = get_file_vault_secret(filename=password_file, loader=DataLoader())
        secret.load()
    except AnsibleError as exc:
        raise UserError(f"{password_file}: {exc}") from exc
    return VaultLib([("default", secret)])


def reveal(inv: Inventory, host: str, variables: dict[str, Any], value: Any, where: str, vault: Any) -> str:
    """The plain text of a secret `value` that host `host` sees; `where` names it in errors."""
    ref = _VAR_REF.match(value) if isinstance(value, str) else None
    if ref:
        name = ref.group(1)
        if name not in variables:
            raise UserError(f"{where}: refers to {name}, which host {host} does not define")
        value, where = variables[name], f"{var_file(inv, host, name)}: {name} (host {host})"
    if isinstance(value, VaultText):
        if vault is None:
            raise UserError(f"{where}: is vault-encrypted: pass --vault-password-file")
        try:
            return str(vault.decrypt(value.ciphertext.encode()).decode())
        except Exception as exc:  # ansible raises AnsibleError subclasses with the reason
            raise UserError(f"{where}: cannot decrypt: {exc}") from exc
    if not isinstance(value, str) or "{{" in value:
        raise UserError(f"{where}: expected a string or one {{{{ variable }}}} reference")
    return value
