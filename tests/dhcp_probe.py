"""A DHCP client for tests: one DHCPDISCOVER as PXE firmware, iPXE or a plain OS would send it (RFC 2131,
4578 and iPXE's option 175), and every answer within a few seconds, decoded; or, with --lease, a whole
lease (DISCOVER, REQUEST of the address offered, ACK or NAK) under a client identifier (option 61), as
each of firmware, installer and installed OS takes one with its own. Run inside the client's network
namespace: `python3 -m tests.dhcp_probe IFACE MAC --as bios|uefi7|uefi9|ipxe|os [--lease [--client-id
HEX]]` prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import subprocess
import time
from typing import Any

MAGIC = b"\x63\x82\x53\x63"
ARCH = {"bios": 0, "uefi7": 7, "uefi9": 9, "ipxe": 0}
TYPES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 5: "ACK", 6: "NAK"}


def _option(code: int, value: bytes) -> bytes:
    return bytes((code, len(value))) + value


def message(
    mac: str, kind: str, xid: int, mtype: int = 1, extra: bytes = b"", ciaddr: str = "0.0.0.0"
) -> bytes:
    """A DISCOVER (or, with mtype 3, a REQUEST) as a client of this kind sends it (pure)."""
    hw = bytes.fromhex(mac.replace(":", ""))
    header = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000, socket.inet_aton(ciaddr),
                         *(b"\0" * 4,) * 3, hw.ljust(16, b"\0"), b"\0" * 64, b"\0" * 128)  # fmt: skip
    options = _option(53, bytes((mtype,))) + _option(55, bytes((1, 3, 6, 43, 60, 66, 67, 175))) + extra
    if kind != "os":
        arch = ARCH[kind]
        options += _option(60, f"PXEClient:Arch:{arch:05d}:UNDI:002001".encode())
        options += _option(93, struct.pack("!H", arch)) + _option(94, b"\x01\x02\x01")
        options += _option(97, b"\x00" + bytes(range(16)))
    if kind == "ipxe":
        options += _option(77, b"iPXE") + _option(
            175, _option(19, b"\x01")
        )  # iPXE's own: user class, features
    return header + MAGIC + options + b"\xff"


def decode(packet: bytes) -> dict[str, Any]:
    """What an answer says (pure): type, addresses, boot file, the options that matter here."""
    yiaddr, siaddr = packet[16:20], packet[20:24]
    file = packet[108:236].split(b"\0", 1)[0].decode(errors="replace")
    options: dict[int, bytes] = {}
    at = 240
    while at < len(packet) and packet[at] != 255:
        if packet[at] == 0:
            at += 1
            continue
        code, size = packet[at], packet[at + 1]
        options[code] = packet[at + 2 : at + 2 + size]
        at += 2 + size
    return {
        "type": TYPES.get(options.get(53, b"\0")[0], "?"),
        "mac": packet[28:34].hex(":"),
        "yiaddr": socket.inet_ntoa(yiaddr),
        "siaddr": socket.inet_ntoa(siaddr),
        "server": socket.inet_ntoa(options[54]) if 54 in options else "",
        "file": file or options.get(67, b"").rstrip(b"\0").decode(errors="replace"),
        "vendor_class": options.get(60, b"").decode(errors="replace"),
        "router": 3 in options,
        "pxe": _pxe(options.get(43, b"")) if options.get(60, b"").startswith(b"PXEClient") else {},
    }


def _pxe(vendor: bytes) -> dict[str, Any]:
    """PXE's vendor options (option 43 of a PXEClient answer): discovery control and the boot menu's items."""
    sub: dict[int, bytes] = {}
    at = 0
    while at + 1 < len(vendor) and vendor[at] != 255:
        sub[vendor[at]] = vendor[at + 2 : at + 2 + vendor[at + 1]]
        at += 2 + vendor[at + 1]
    menu, at = [], 0
    items = sub.get(9, b"")
    while at + 3 <= len(items):
        kind, size = struct.unpack("!HB", items[at : at + 3])
        menu.append({"type": kind, "text": items[at + 3 : at + 3 + size].decode(errors="replace")})
        at += 3 + size
    return {"discovery_control": sub[6][0] if 6 in sub else None, "menu": menu, "raw": vendor.hex()}


def _answers(s: socket.socket, xid: int, wait_s: float) -> list[dict[str, Any]]:
    answers = []
    end = time.monotonic() + wait_s
    while (left := end - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            packet = s.recv(4096)
        except TimeoutError:
            break
        if len(packet) > 240 and packet[4:8] == xid.to_bytes(4, "big") and packet[236:240] == MAGIC:
            answers.append(decode(packet))
    return answers


def probe(iface: str, mac: str, kind: str, wait_s: float = 3.0) -> dict[str, Any]:
    """The answers to one DISCOVER sent from `iface` as `kind` for the client `mac` (`offers`), and, as PXE
    firmware and iPXE go on where a proxy's offer names no file: the address taken from the offer that has
    one (put on `iface`), then a REQUEST to the proxy's port 4011 (for the first boot menu item where the
    offer has a menu), and the proxy's answer (`boot`)."""
    xid = int.from_bytes(os.urandom(4), "big")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
        s.bind(("0.0.0.0", 68))
        s.sendto(message(mac, kind, xid), ("255.255.255.255", 67))
        offers = _answers(s, xid, wait_s)
        proxy = next((o for o in offers if o["pxe"] and o["yiaddr"] == "0.0.0.0" and not o["file"]), None)
        lease = next((o for o in offers if o["yiaddr"] != "0.0.0.0"), None)
        boot = None
        if proxy and lease:
            subprocess.run(["ip", "addr", "replace", f"{lease['yiaddr']}/24", "dev", iface], check=True)
            # With a menu (BIOS PXE) the first item, layer 0; without one (an answer UEFI firmware takes as
            # a boot server's, "BINL"), the plain request.
            menu = proxy["pxe"]["menu"]
            item = _option(43, _option(71, struct.pack("!HH", menu[0]["type"], 0)) + b"\xff") if menu else b""
            request = message(mac, kind, xid, 3, item, lease["yiaddr"])
            s.sendto(request, (proxy["server"], 4011))
            boot = next(iter(_answers(s, xid, wait_s)), None)
        return {"offers": offers, "boot": boot}


def lease(iface: str, mac: str, kind: str, client_id: bytes = b"", wait_s: float = 3.0) -> dict[str, Any]:
    """DISCOVER, then REQUEST the address of the first offer that has one (to its server): the offer and
    the server's answer (ACK or NAK; None for none), under `client_id` when given."""
    xid = int.from_bytes(os.urandom(4), "big")
    clid = _option(61, client_id) if client_id else b""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
        s.bind(("0.0.0.0", 68))
        s.sendto(message(mac, kind, xid, extra=clid), ("255.255.255.255", 67))
        offer = next((o for o in _answers(s, xid, wait_s) if o["yiaddr"] != "0.0.0.0"), None)
        if offer is None:
            return {"offer": None, "answer": None}
        chosen = _option(50, socket.inet_aton(offer["yiaddr"])) + _option(
            54, socket.inet_aton(offer["server"])
        )
        s.sendto(message(mac, kind, xid, 3, chosen + clid), ("255.255.255.255", 67))
        return {"offer": offer, "answer": next(iter(_answers(s, xid, wait_s)), None)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("iface")
    parser.add_argument("mac")
    parser.add_argument("--as", dest="kind", choices=[*ARCH, "os"], required=True)
    parser.add_argument("--lease", action="store_true", help="DISCOVER, REQUEST, and the ACK or NAK")
    parser.add_argument("--client-id", default="", help="option 61, in hex")
    args = parser.parse_args()
    if args.lease:
        print(json.dumps(lease(args.iface, args.mac, args.kind, bytes.fromhex(args.client_id))))
    else:
        print(json.dumps(probe(args.iface, args.mac, args.kind)))


if __name__ == "__main__":
    main()
