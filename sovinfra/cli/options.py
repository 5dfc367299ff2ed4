"""Options several verbs share, declared once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def vault_password_option(fn: F) -> F:
    return click.option(
        "--vault-password-file",
        envvar="ANSIBLE_VAULT_PASSWORD_FILE",
        type=click.Path(dir_okay=False, exists=True),
        help="for vaulted variables such as API keys (or ANSIBLE_VAULT_PASSWORD_FILE; the lab has its own)",
    )(fn)


def limit_option(fn: F) -> F:
    """--limit on every verb: an Ansible host pattern, resolved as ansible-playbook resolves it."""
    return click.option(
        "--limit",
        help="only these hosts: an Ansible pattern (a,b  gpu_nodes:!rack_b  g1:&g2  gpu-*  ~regex)",
    )(fn)
