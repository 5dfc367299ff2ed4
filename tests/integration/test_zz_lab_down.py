"""Runs last: `lab down` removes everything the lab made."""

from __future__ import annotations

import subprocess

import pytest
from click.testing import CliRunner

from sovinfra.cli import cli
from sovinfra.lab import config
from sovinfra.lab.state import LabState

pytestmark = pytest.mark.lab


def sh(*args: str) -> str:
    return subprocess.run(list(args), capture_output=True, text=True).stdout


def test_down_leaves_nothing_behind(lab: LabState) -> None:
    result = CliRunner().invoke(cli, ["lab", "down"])
    assert result.exit_code == 0, result.output
    assert "nothing left behind" in result.output
    links = sh("ip", "-o", "link")
    assert config.BRIDGE not in links and "vb-svlab" not in links
    assert sh("ip", "netns", "list").strip() == ""
    assert config.NFT_TABLE not in sh("nft", "list", "tables")
    procs = sh("ps", "-eo", "args")
    assert "systemd-nspawn" not in procs and "apt-cacher-ng" not in procs
    assert sh("find", "/sys/fs/cgroup", "-maxdepth", "2", "-name", config.CGROUP_NAME).strip() == ""
    assert CliRunner().invoke(cli, ["lab", "status"]).output.strip() == "lab is down"
