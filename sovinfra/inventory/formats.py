"""Formats of inventory values that the role specs' types cannot express (pure: a value in, a reason or
the normalised value out). The validator and the code that uses each value share these, so a value the
inventory check accepts is one the code can use."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?$"
)
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
# A whole disk as the installer names it: /dev/sda, /dev/vda, /dev/nvme0n1, or a stable /dev/disk/by-*.
_DISK = re.compile(
    r"^/dev/(sd[a-z]+|vd[a-z]+|xvd[a-z]+|hd[a-z]+|nvme\d+n\d+|disk/by-[a-z-]+/[A-Za-z0-9:._+-]+)$"
)


def host_problem(value: str) -> str | None:
    """Why `value` is neither an IP address nor a host name, or None."""
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        return None if HOSTNAME.match(value) else f"{value!r} is neither an IP address nor a valid host name"


def mac(value: object) -> str:
    """A MAC address as dnsmasq and iPXE write it (lower case, colons); ValueError says why not."""
    text = str(value).strip().lower().replace("-", ":") if isinstance(value, str) else ""
    if not _MAC.match(text):
        raise ValueError(f"{value!r} is not a MAC address (six hex pairs: 52:54:00:12:34:56)")
    if int(text[:2], 16) & 1:
        raise ValueError(f"{value!r} is a multicast address, not a network card's")
    return text


def disk(value: object) -> str:
    """The install target: a whole-disk device path; ValueError says why not."""
    if not isinstance(value, str) or not _DISK.match(value):
        raise ValueError(
            f"{value!r} is not a whole disk (/dev/sda, /dev/vda, /dev/nvme0n1 or /dev/disk/by-id/...)"
        )
    return value


def bmc_url(value: object) -> str:
    """A BMC's Redfish base URL, https://HOST[:PORT], from `HOST`, `HOST:PORT` or that URL.

    Plain http is refused: the BMC's password would cross the network in clear."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be the BMC's host name or address (https://HOST[:PORT] also accepted)")
    text = value.strip()
    if "://" not in text:
        text = f"https://{text}"
    parts = urlsplit(text)
    if parts.scheme != "https":
        raise ValueError(f"{value!r}: only https is accepted (the BMC password must not travel in clear)")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{value!r}: give only the host and port; the Redfish path is known")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{value!r}: {exc}") from exc
    host = parts.hostname or ""
    problem = host_problem(host) if host else f"{value!r} has no host"
    if problem:
        raise ValueError(problem)
    shown = f"[{host}]" if ":" in host else host
    return f"https://{shown}" + (f":{port}" if port else "")
