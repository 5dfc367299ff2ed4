"""What the netboot service logged since a time (pyinfra fact): dnsmasq's DHCP and TFTP lines."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase


class NetbootLog(FactBase):
    """journalctl of the netboot unit, one line each, stamped in ISO form (sovinfra.netboot.progress)."""

    def command(self, since: str) -> str:
        return f"journalctl -u sovinfra-netboot -o short-iso --no-pager -q --since {shlex.quote(since)}; true"

    def process(self, output: list[str]) -> list[str]:
        return list(output)


class Answers(FactBase):
    """True once the host answers ssh (with the key known_hosts pins: pyinfra checks it)."""

    def command(self) -> str:
        return "true"

    def process(self, output: list[str]) -> bool:
        return True
