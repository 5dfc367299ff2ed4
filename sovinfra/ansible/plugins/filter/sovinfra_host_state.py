# The host-state script's output as a mapping, parsed by the same function as `sovinfra facts`
# (sovinfra/fleet/host_state.py): preflight and the driver role read a host one way, with one vocabulary.
from __future__ import annotations

from sovinfra.fleet import host_state


def parse(lines):
    return host_state.parse([str(line) for line in lines])


class FilterModule:
    def filters(self):
        return {"sovinfra_host_state": parse}
