"""The lab bridge and the nft table that keeps lab hosts from routing anywhere but the lab."""

from __future__ import annotations

from pathlib import Path

from sovinfra.lab import config
from sovinfra.lab.shell import run


def bridge_exists() -> bool:
    return Path(f"/sys/class/net/{config.BRIDGE}").exists()


def ensure_bridge(gateway: str, prefixlen: int) -> None:
    if not bridge_exists():
        run(["ip", "link", "add", config.BRIDGE, "type", "bridge"])
    addrs = run(["ip", "-o", "-4", "addr", "show", "dev", config.BRIDGE])
    if f" {gateway}/{prefixlen} " not in addrs:
        run(["ip", "addr", "add", f"{gateway}/{prefixlen}", "dev", config.BRIDGE])
    run(["ip", "link", "set", config.BRIDGE, "up"])


def nft_ruleset() -> str:
    """Air gap by construction: nothing is forwarded between the bridge and anywhere else.

    Host to host on the bridge stays allowed: with br_netfilter loaded, bridged frames also pass the
    inet forward hook, with the bridge as both in and out interface.
    """
    return (
        f"table inet {config.NFT_TABLE} {{\n"
        "  chain forward {\n"
        "    type filter hook forward priority 0; policy accept;\n"
        f'    iifname "{config.BRIDGE}" oifname "{config.BRIDGE}" accept\n'
        f'    iifname "{config.BRIDGE}" drop\n'
        f'    oifname "{config.BRIDGE}" drop\n'
        "  }\n"
        "}\n"
    )


def nft_table_exists() -> bool:
    out = run(["nft", "list", "tables"], check=False)
    return f"inet {config.NFT_TABLE}" in out


def ensure_nft() -> None:
    if nft_table_exists():
        run(["nft", "delete", "table", "inet", config.NFT_TABLE])
    run(["nft", "-f", "-"], input_text=nft_ruleset())


def teardown() -> None:
    if nft_table_exists():
        run(["nft", "delete", "table", "inet", config.NFT_TABLE])
    if bridge_exists():
        run(["ip", "link", "delete", config.BRIDGE])
