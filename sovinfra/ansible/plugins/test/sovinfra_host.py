# Jinja tests shared by the roles: one definition of what "a container host" is.
from __future__ import annotations

# virtualization_type values Ansible reports for OS containers (nspawn, LXC, OCI runtimes).
CONTAINER_TYPES = {"systemd-nspawn", "container", "lxc", "docker", "podman", "containerd"}


def container_host(facts):
    """True for a host that is a container: no kernel modules to build or load, the host's clock."""
    return facts.get("virtualization_role") == "guest" and facts.get("virtualization_type") in CONTAINER_TYPES


class TestModule:
    def tests(self):
        return {"container_host": container_host}
