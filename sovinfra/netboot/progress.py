"""How far each server got in its network boot, from the netboot service's log (pure: lines in, stages
out). dnsmasq logs each DHCP answer with the MAC and each TFTP transfer with the file and the address; the
stages are those a server passes in order, so the last one seen says where a stuck install stopped."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# In the order a server passes them.
STAGES = ("dhcp", "ipxe", "installer", "files")
MEANING = {
    "": "no DHCP request seen: check the BMC's boot order, the NIC's MAC, the provisioning network",
    "dhcp": "got its address (or, from a proxy, its boot file); iPXE never asked for its script (the firmware"
    " did not chain to iPXE?)",
    "ipxe": "got its boot script; the installer was not fetched (a disk boot, or iPXE stopped)",
    "installer": "the installer was fetched; it never asked for the server's files (its kernel, or no DHCP"
    " answer to it?)",
    "files": "the installer took the server's files and is writing the image (its console shows how far)",
}
_STAMP = re.compile(r"^(\S+)\s")
_SENT = re.compile(r"\bsent (\S+) to (\S+)")
_NOT_FOUND = re.compile(r"\bfile (\S+) not found for (\S+)")
# proxy-DHCP (netboot_dhcp: proxy), by dnsmasq's transaction id: a client asking (`PXE(if) <mac> proxy`)
# and the boot file named to it (`bootfile name: <file>`, with log-dhcp), or the file named in one line to
# a client asking from its address on port 4011 (`PXE(if) <address> <mac> <file>`).
_PROXY_ASKED = re.compile(r"\b(\d+) PXE\(\S+\) (\S+) proxy\s*$")
_PROXY_NAMED = re.compile(r"\b(\d+) PXE\(\S+\) \S+ (\S+) (\S+)\s*$")
_BOOTFILE = re.compile(r"\b(\d+) bootfile name: (\S+)")


def proxy_boot_files(lines: list[str]) -> list[tuple[str, str, str]]:
    """(time stamp, MAC, boot file) of each boot file the proxy named, in the log's order (pure)."""
    asking: dict[str, str] = {}  # transaction id -> MAC
    out = []
    for line in lines:
        stamp = _STAMP.match(line)
        when = stamp.group(1) if stamp else ""
        if asked := _PROXY_ASKED.search(line):
            asking[asked.group(1)] = asked.group(2)
        elif named := _PROXY_NAMED.search(line):
            asking[named.group(1)] = named.group(2)
            out.append((when, named.group(2), named.group(3)))
        elif (boot := _BOOTFILE.search(line)) and boot.group(1) in asking:
            out.append((when, asking[boot.group(1)], boot.group(2)))
    return out


@dataclass(frozen=True)
class Client:
    host: str
    mac: str  # lower case, colons
    address: str

    @property
    def file(self) -> str:
        return self.mac.replace(":", "-")


@dataclass
class Progress:
    host: str
    seen: dict[str, str] = field(default_factory=dict)  # stage -> the log's time stamp of its last sighting
    errors: list[str] = field(default_factory=list)

    @property
    def stage(self) -> str:
        """The furthest stage seen ("" for none)."""
        return next((s for s in reversed(STAGES) if s in self.seen), "")

    def explain(self) -> str:
        at = f" at {self.seen[self.stage]}" if self.stage else ""
        error = f"; last error: {self.errors[-1]}" if self.errors else ""
        return f"{self.host}: {self.stage or 'nothing'}{at}: {MEANING[self.stage]}{error}"


def _stage_of_file(path: str, client: Client) -> str | None:
    if path.endswith(f"/hosts/{client.file}.ipxe"):
        return "ipxe"
    if path.endswith(f"/hosts/{client.file}.install"):
        return "files"
    if path.endswith("/installer.img") and "/images/" in path:
        return "installer"
    return None


def read(lines: list[str], clients: list[Client]) -> dict[str, Progress]:
    """Each client's progress in `lines` (journalctl -o short-iso of the netboot service)."""
    found = {c.host: Progress(c.host) for c in clients}
    by_address = {c.address: c for c in clients}
    by_mac = {c.mac: c for c in clients}
    for when, mac, _file in proxy_boot_files(lines):
        if mac in by_mac:
            found[by_mac[mac].host].seen["dhcp"] = when
    for line in lines:
        stamp = _STAMP.match(line)
        when = stamp.group(1) if stamp else ""
        for client in clients:
            if "DHCPACK(" in line and f" {client.mac} " in f"{line} ":
                found[client.host].seen["dhcp"] = when
        sent = _SENT.search(line)
        if sent and sent.group(2) in by_address:
            client = by_address[sent.group(2)]
            stage = _stage_of_file(sent.group(1), client)
            if stage:
                found[client.host].seen[stage] = when
        missing = _NOT_FOUND.search(line)
        if missing and missing.group(2) in by_address:
            client = by_address[missing.group(2)]
            if missing.group(1).endswith(f"/hosts/{client.file}.failed"):  # the installer's own signal
                found[client.host].errors.append("the installer failed (its console says why)")
            else:
                found[client.host].errors.append(f"{missing.group(1)} not found")
    return found


def to_release(seen: dict[str, Progress], told: list[str]) -> list[str] | None:
    """The servers still installing, when that is fewer than the netboot host was last `told` to install
    (None otherwise, and once none is: the caller's last step tells it, whatever happened). A server whose
    installer reboots before the others finish would boot into a second install: the netboot host is told
    at once, one converge per change rather than per poll."""
    installing = sorted(h for h, p in seen.items() if p.stage != "files")
    return installing if installing and installing != sorted(told) else None
