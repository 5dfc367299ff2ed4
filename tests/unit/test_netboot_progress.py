"""How far each server got in its network boot, read from the netboot service's log (pure). The lines are
dnsmasq's, as journalctl -o short-iso prints them (the lab's, with a second server added)."""

from __future__ import annotations

from sovinfra.netboot import progress
from tests.conftest import FIXTURES

LOG = (FIXTURES / "netboot_journal.log").read_text()
CLIENTS = [
    progress.Client("pxe1", "52:54:00:5f:02:01", "10.213.7.150"),
    progress.Client("pxe2", "52:54:00:5f:02:02", "10.213.7.151"),
    progress.Client("pxe3", "52:54:00:5f:02:03", "10.213.7.152"),
]


def test_each_server_is_as_far_as_its_last_stage_seen() -> None:
    seen = progress.read(LOG.splitlines(), CLIENTS)
    assert seen["pxe1"].stage == "ipxe" and seen["pxe1"].errors == [
        "/srv/sovinfra/netboot/hosts/images/20261203T220000Z/linux not found"
    ]
    assert seen["pxe2"].stage == "files" and seen["pxe2"].seen["installer"] == "2026-12-03T22:36:52+0000"
    # The installer's own signal that it stopped (it asks for a file named so; none exists).
    assert seen["pxe2"].errors == ["the installer failed (its console says why)"]
    assert seen["pxe3"].stage == "" and seen["pxe3"].seen == {}


def test_what_was_last_seen_is_said_in_words() -> None:
    seen = progress.read(LOG.splitlines(), CLIENTS)
    assert seen["pxe1"].explain() == (
        "pxe1: ipxe at 2026-12-03T22:35:02+0000: got its boot script; the installer was not fetched "
        "(a disk boot, or iPXE stopped); last error: "
        "/srv/sovinfra/netboot/hosts/images/20261203T220000Z/linux not found"
    )
    assert "no DHCP request seen" in seen["pxe3"].explain()
    # Another server's transfers, or a MAC that merely contains this one, are not this server's.
    other = ["2026-12-03T22:40:00+0000 m dnsmasq-dhcp[1]: 7 DHCPACK(host0) 10.0.0.9 52:54:00:5f:02:011 x"]
    assert progress.read(other, CLIENTS)["pxe1"].stage == ""


def test_a_proxy_naming_the_boot_file_is_the_dhcp_stage_its_menu_offer_is_not() -> None:
    """netboot_dhcp: proxy. dnsmasq 2.90's lines: to a client asking on port 4011 from its address (iPXE, as
    SeaBIOS' NIC ROM is; tests/dhcp_probe.py) the file is named in one line; to OVMF's PXE (the lab's UEFI
    server) in a `bootfile name:` line of the same transaction."""
    offer = "2026-12-04T13:30:00+0000 m dnsmasq-dhcp[9]: 40319 PXE(prov-0) 52:54:00:5f:02:01 proxy"
    boot = "2026-12-04T13:30:01+0000 m dnsmasq-dhcp[9]: 40319 PXE(prov-0) 10.213.7.150 52:54:00:5f:02:01"
    boot += " boot.ipxe"
    assert progress.read([offer], CLIENTS)["pxe1"].stage == ""
    seen = progress.read([offer, boot], CLIENTS)
    assert seen["pxe1"].seen == {"dhcp": "2026-12-04T13:30:01+0000"} and seen["pxe2"].stage == ""
    longer = boot.replace("52:54:00:5f:02:01", "52:54:00:5f:02:011")
    assert progress.read([longer], CLIENTS)["pxe1"].stage == ""
    uefi = [
        "2026-12-04T13:10:28+0000 mirror1 dnsmasq-dhcp[2685]: 1860407513 PXE(host0) 52:54:00:5f:02:02 proxy",
        "2026-12-04T13:10:32+0000 mirror1 dnsmasq-dhcp[2685]: 1114173320 PXE(host0) 52:54:00:5f:02:02 proxy",
        "2026-12-04T13:10:32+0000 mirror1 dnsmasq-dhcp[2685]: 1114173320 bootfile name: snponly.efi",
        "2026-12-04T13:10:32+0000 mirror1 dnsmasq-dhcp[2685]: 1114173320 server name: 10.213.7.10",
        "2026-12-04T13:10:35+0000 mirror1 dnsmasq-dhcp[2685]: 3302297702 PXE(host0) 52:54:00:5f:02:02 proxy",
        "2026-12-04T13:10:35+0000 mirror1 dnsmasq-dhcp[2685]: 3302297702 bootfile name: boot.ipxe",
        "2026-12-04T13:10:36+0000 mirror1 dnsmasq-dhcp[2685]: 77 bootfile name: undionly.kpxe",  # no client
    ]
    assert progress.proxy_boot_files(uefi) == [
        ("2026-12-04T13:10:32+0000", "52:54:00:5f:02:02", "snponly.efi"),
        ("2026-12-04T13:10:35+0000", "52:54:00:5f:02:02", "boot.ipxe"),
    ]
    assert progress.read(uefi, CLIENTS)["pxe2"].seen == {"dhcp": "2026-12-04T13:10:35+0000"}


def test_a_server_is_let_go_once_it_has_its_files_while_the_others_still_install() -> None:
    def at(**stages: str) -> dict[str, progress.Progress]:
        return {h: progress.Progress(h, {s: "t"} if s else {}) for h, s in stages.items()}

    # pxe2 took its files: the netboot host is told to install only the others (its next boot is its disk).
    everyone = ["pxe1", "pxe2", "pxe3"]
    assert progress.to_release(at(pxe1="installer", pxe2="files", pxe3=""), everyone) == ["pxe1", "pxe3"]
    # Told once: nothing new, nothing to say (one converge of the netboot host per change, not per poll).
    assert progress.to_release(at(pxe1="installer", pxe2="files", pxe3=""), ["pxe1", "pxe3"]) is None
    assert progress.to_release(at(pxe1="files", pxe2="files", pxe3="dhcp"), ["pxe1", "pxe3"]) == ["pxe3"]
    # None yet, or all at once: the caller's last step says "installed" for all.
    assert progress.to_release(at(pxe1="ipxe", pxe2="dhcp"), ["pxe1", "pxe2"]) is None
    assert progress.to_release(at(pxe1="files", pxe2="files"), ["pxe2"]) is None


def test_a_lab_recording_lets_the_first_server_go_while_the_other_still_installs() -> None:
    """The lab's own log of two servers installed at once, replayed as provision's polls read it: the
    first to take its files is released on its own, the second only by the last step."""
    lines = (FIXTURES / "netboot_journal_lab.log").read_text().splitlines()
    clients = CLIENTS[:2]
    seen = progress.read(lines, clients)
    assert {h: p.stage for h, p in seen.items()} == {"pxe1": "files", "pxe2": "files"}
    assert seen["pxe1"].seen["files"] < seen["pxe2"].seen["files"]
    assert not seen["pxe1"].errors and not seen["pxe2"].errors  # OVMF's aborted first transfer is no error
    stamps = sorted({line.split()[0] for line in lines if not line.startswith("#")})
    told, releases = ["pxe1", "pxe2"], []
    for stamp in stamps:
        at = progress.read([line for line in lines if line.split()[0] <= stamp], clients)
        if (installing := progress.to_release(at, told)) is not None:
            releases.append((stamp, installing))
            told = installing
    assert releases == [(seen["pxe1"].seen["files"], ["pxe2"])]
