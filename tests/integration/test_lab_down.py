"""`lab down` removes everything the lab made: marked lab_last, so it runs after every other test
(tests/conftest.py orders it), whatever the files are called."""

from __future__ import annotations

import json
import subprocess

import pytest
from click.testing import CliRunner

from sovinfra import paths
from sovinfra.cli import cli
from sovinfra.lab import config
from sovinfra.lab.state import LabState

pytestmark = [pytest.mark.lab, pytest.mark.lab_last]


def sh(*args: str) -> str:
    return subprocess.run(list(args), capture_output=True, text=True).stdout


def test_no_packet_left_the_lab_and_the_counter_counts(own_lab: LabState) -> None:
    """After the whole suite (a site converged, verified and changed, from the mirror alone): 0 packets
    out. Then one probe to this machine's own non-lab address proves the counter is not blind."""
    status = json.loads(CliRunner().invoke(cli, ["lab", "status", "--json"]).output)
    assert status["egress_packets"] == 0
    gpu1 = own_lab.hosts["gpu1"]
    outside = next(
        a.split("/")[0]
        for line in sh("ip", "-o", "-4", "addr").splitlines()
        for a in line.split()[3:4]
        if not a.startswith(("127.", own_lab.gateway))
    )
    ssh = [
        "ssh",
        "-i",
        f"{paths.lab_dir()}/id_ed25519",
        "-o",
        f"UserKnownHostsFile={paths.lab_dir()}/known_hosts",
    ]
    route = f"ip route add {outside}/32 via {own_lab.gateway}"
    send = f"socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('{outside}', 9))"
    probe = f'python3 -c "import socket; {send}"'
    subprocess.run(
        [*ssh, f"root@{gpu1.address}", f"{route} && {probe}; ip route del {outside}/32"], check=True
    )
    status = json.loads(CliRunner().invoke(cli, ["lab", "status", "--json"]).output)
    assert status["egress_packets"] == 1


def test_down_leaves_nothing_behind(own_lab: LabState) -> None:
    result = CliRunner().invoke(cli, ["lab", "down"])
    assert result.exit_code == 0, result.output
    assert "nothing left behind" in result.output
    links = sh("ip", "-o", "link")
    assert config.BRIDGE not in links and "vb-svlab" not in links
    assert sh("ip", "netns", "list").strip() == ""
    assert config.NFT_TABLE not in sh("nft", "list", "tables")
    procs = sh("ps", "-eo", "args")
    assert "systemd-nspawn" not in procs and "apt-cacher-ng" not in procs
    # The stand-in repositories are signed with a key of the lab's own: its gpg-agent is gone too.
    lab_places = (str(paths.lab_dir()), str(paths.lab_cache_dir()))
    agents = [p for p in procs.splitlines() if "gpg-agent" in p and any(place in p for place in lab_places)]
    assert agents == [], agents
    assert sh("find", "/sys/fs/cgroup", "-maxdepth", "2", "-name", config.CGROUP_NAME).strip() == ""
    assert CliRunner().invoke(cli, ["lab", "status"]).output.strip() == "lab is down"
