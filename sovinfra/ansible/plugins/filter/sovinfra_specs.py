# Every role's argument spec, read the way `sovinfra inventory check` reads them, and which options
# validate.yml can judge before any role runs (validate.yml uses both); a role's default where a play
# keyword needs it before the role loads.
from __future__ import annotations

from ansible.errors import AnsibleError, AnsibleFilterError
from jinja2 import Undefined
from jinja2.exceptions import UndefinedError

from sovinfra import paths
from sovinfra.inventory import defaults
from sovinfra.inventory.specs import role_options

# What rendering a value that cannot be rendered yet raises (2.19 raises a jinja2 UndefinedError subclass
# for an undecryptable vault value; earlier releases raise AnsibleError).
_UNRENDERABLE = (AnsibleError, UndefinedError)


def role_specs(roles_dir):
    """The specs of the roles in ROLES_DIR; a relative path is the project's own (`'roles'`), wherever
    the playbook is kept."""
    roles_dir = paths.project_root() / str(roles_dir)  # an absolute ROLES_DIR stays as it is
    found = role_options(roles_dir)
    if not found:
        raise AnsibleFilterError(f"no roles with meta/argument_specs.yml under {roles_dir}")
    return [{"role": role, "options": options} for role, options in found.items()]


def _resolved(value):
    """False when the value (or anything inside it) cannot be rendered now: undefined (ansible-core 2.19
    returns a marker) or vaulted without the vault's password."""
    try:
        if isinstance(value, Undefined):
            return False
        if isinstance(value, dict):
            return all(_resolved(v) for v in value.values())
        if isinstance(value, (list, tuple)):
            return all(_resolved(v) for v in value)
    except _UNRENDERABLE:
        return False
    return True


def judgeable(options, host_vars):
    """The spec's options less those whose host value cannot resolve before the roles run.

    A value that refers to a role default (`"{{ nvidia_container_toolkit_repo_url }}/key"`), or is vaulted
    and no vault password was given, cannot be rendered before that role runs; like `sovinfra inventory
    check`, validate.yml leaves it unjudged, and the role's own argument validation judges it when the
    role starts.
    """
    kept = {}
    for name, spec in options.items():
        if name in host_vars:
            try:
                value = host_vars[name]
            except _UNRENDERABLE:
                continue
            if not _resolved(value):
                continue
        kept[name] = spec
    return kept


def role_default(role, name):
    """A role's default, for a play keyword that is evaluated before the role's defaults are loaded
    (`serial`): read from the role's defaults file, so the value is written once."""
    found = defaults.role_defaults(paths.project_root() / "roles", str(role))
    if name not in found:
        raise AnsibleFilterError(f"role {role} has no default {name}")
    return found[name]


class FilterModule:
    def filters(self):
        return {
            "sovinfra_role_specs": role_specs,
            "sovinfra_judgeable": judgeable,
            "sovinfra_role_default": role_default,
        }
