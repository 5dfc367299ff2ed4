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


def other_machine_option(fn: F) -> F:
    """--other-machine on the verbs that rebuild or reinstall a server the lock and known_hosts know."""
    return click.option(
        "--other-machine",
        is_flag=True,
        help="go on even though the server's ssh host key, machine or GPUs differ from what is known",
    )(fn)


def limit_option(fn: F) -> F:
    """--limit on every verb: an Ansible host pattern, resolved as ansible-playbook resolves it."""
    return click.option(
        "--limit",
        help="only these hosts: an Ansible pattern (a,b  gpu_nodes:!rack_b  g1:&g2  gpu-*  ~regex)",
    )(fn)


def extra_vars_option(fn: F) -> F:
    """-e on every verb that runs a playbook; checked like the inventory, passed in a 0600 file."""
    return click.option(
        "-e",
        "--extra-vars",
        multiple=True,
        help="KEY=VALUE, a JSON/YAML mapping or @FILE (checked like the inventory)",
    )(fn)


def strategy_option(fn: F) -> F:
    from sovinfra.ansible import strategy as strategies

    return click.option(
        "--strategy",
        "strategy_name",
        type=click.Choice(strategies.CHOICES),
        default=strategies.DEFAULT,
        show_default=True,
        help="mitogen: one Python per host for the whole run; linear: Ansible's own, one per task",
    )(fn)


def site_endpoint_option(fn: F) -> F:
    """What clients use is tested by default: the site endpoint, beside each node's own services."""
    return click.option(
        "--site-endpoint/--no-site-endpoint",
        default=True,
        show_default=True,
        help="also the site endpoint (group inference_gateway) for each model the nodes serve",
    )(fn)
