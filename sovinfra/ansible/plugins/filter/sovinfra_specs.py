# Every role's argument spec, read the way `sovinfra inventory check` reads them (validate.yml uses it).
from __future__ import annotations

from pathlib import Path

from ansible.errors import AnsibleFilterError

from sovinfra.inventory.specs import role_options


def role_specs(roles_dir):
    found = role_options(Path(str(roles_dir)))
    if not found:
        raise AnsibleFilterError(f"no roles with meta/argument_specs.yml under {roles_dir}")
    return [{"role": role, "options": options} for role, options in found.items()]


class FilterModule:
    def filters(self):
        return {"sovinfra_role_specs": role_specs}
