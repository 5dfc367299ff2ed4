"""The lab bridge and the nft table that keeps lab hosts from routing anywhere but the lab."""

from __future__ import annotations

import json
from pathlib import Path

from sovinfra.commands import run
from sovinfra.lab import config


def bridge_exists() -> bool:
    return Path(f"/sys/class/net/{config.BRIDGE}").exists()


def ensure_bridge(gateway: str, prefixlen: int) -> None:
    if not bridge_exists():
        run(["ip", "link", "add", config.BRIDGE, "type", "bridge"])
    addrs = run(["ip", "-o", "-4", "addr", "show", "dev", config.BRIDGE])
    if f" {gateway}/{prefixlen} " not in addrs:
        run(["ip", "addr", "add", f"{gateway}/{prefixlen}", "dev", config.BRIDGE])
    run(["ip", "link", "set", config.BRIDGE, "up"])


EGRESS_COUNTER = "egress"


def nft_ruleset(subnet: str) -> str:
    """Air gap by construction: nothing is forwarded between the bridge and anywhere else.

    Host to host on the bridge stays allowed: with br_netfilter loaded, bridged frames also pass the
    inet forward hook, with the bridge as both in and out interface. Every packet a lab host sends to an
    address outside the lab subnet (routed, or to one of this machine's other addresses) is counted in
    the `egress` counter and dropped; link-local multicast and broadcast stay on the wire and are not.
    """
    bridge = f'iifname "{config.BRIDGE}"'
    local = "{ 224.0.0.0/4, 255.255.255.255 }"
    local6 = "{ fe80::/10, ff00::/8 }"
    return (
        f"table inet {config.NFT_TABLE} {{\n"
        f"  counter {EGRESS_COUNTER} {{ }}\n"
        "  chain forward {\n"
        "    type filter hook forward priority 0; policy accept;\n"
        f'    {bridge} oifname "{config.BRIDGE}" accept\n'
        f"    {bridge} counter name {EGRESS_COUNTER} drop\n"
        f'    oifname "{config.BRIDGE}" drop\n'
        "  }\n"
        "  chain input {\n"
        "    type filter hook input priority 0; policy accept;\n"
        f"    {bridge} ip daddr != {{ {subnet} }} ip daddr != {local} counter name {EGRESS_COUNTER} drop\n"
        f"    {bridge} ip6 daddr != {local6} counter name {EGRESS_COUNTER} drop\n"
        "  }\n"
        "}\n"
    )


def egress_packets() -> int | None:
    """Packets lab hosts sent outside the lab since the table was made (None: no lab table)."""
    if not nft_table_exists():
        return None
    out = run(["nft", "-j", "list", "counter", "inet", config.NFT_TABLE, EGRESS_COUNTER], check=False)
    try:
        items = json.loads(out)["nftables"]
    except (ValueError, KeyError):
        return None
    return next((int(i["counter"]["packets"]) for i in items if "counter" in i), None)


def nft_table_exists() -> bool:
    out = run(["nft", "list", "tables"], check=False)
    return f"inet {config.NFT_TABLE}" in out


def ensure_nft(subnet: str) -> None:
    """The table, made anew unless it is already this one (its counter then keeps counting)."""
    if nft_table_exists():
        if egress_packets() is not None:
            return
        run(["nft", "delete", "table", "inet", config.NFT_TABLE])
    run(["nft", "-f", "-"], input_text=nft_ruleset(subnet))


def teardown() -> None:
    if nft_table_exists():
        run(["nft", "delete", "table", "inet", config.NFT_TABLE])
    if bridge_exists():
        run(["ip", "link", "delete", config.BRIDGE])
