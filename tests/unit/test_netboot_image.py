"""The OS image's record and recipe (sovinfra/netboot/image.py), without building one: what makes a new
image, what a store without the image's packages answers, and the module's command line (the netboot role
runs it on the control node). Building and installing one: tests/integration/test_netboot_installer.py."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from sovinfra.errors import UserError
from sovinfra.mirror import os_tree
from sovinfra.netboot import image
from tests.conftest import ROOT

SNAPSHOT = os_tree.Source("copy:///srv/store/packages/aptly/public/site", "20261204T120000Z", "")


def test_the_images_packages_are_the_roles_and_hold_what_its_installer_runs() -> None:
    pkgs = image.packages(ROOT / "roles")
    assert {"linux-image-amd64", "grub-pc-bin", "grub-efi-amd64-bin", "openssh-server", "python3"} <= set(
        pkgs
    )
    # The hook copies these into the installer; the boot script calls them.
    hook = (image.INSTALLER / "hook").read_text()
    for tool, package in (("tar", "tar"), ("zstd", "zstd"), ("sfdisk", "fdisk"), ("mke2fs", "e2fsprogs"),
                          ("mkfs.fat", "dosfstools")):  # fmt: skip
        assert re.search(rf"/{re.escape(tool)}[ ;]", hook), tool
        assert package in pkgs or package == "tar", package  # tar: the base system


def test_a_new_snapshot_key_or_installer_makes_a_new_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkgs = image.packages(ROOT / "roles")
    first = image.recipe(pkgs, SNAPSHOT)
    assert image.recipe(pkgs, SNAPSHOT) == first  # stable
    assert image.recipe(pkgs, os_tree.Source(SNAPSHOT.url, "20261205T000000Z")) != first
    assert image.recipe([*pkgs, "curl"], SNAPSHOT) != first
    key = tmp_path / "site.gpg"
    key.write_bytes(b"key")
    assert image.recipe(pkgs, os_tree.Source(SNAPSHOT.url, SNAPSHOT.suite, str(key))) != first
    changed = tmp_path / "installer"
    shutil.copytree(image.INSTALLER, changed)
    (changed / "sovinfra").write_text((changed / "sovinfra").read_text() + "\n# changed\n")
    monkeypatch.setattr(image, "INSTALLER", changed)
    assert image.recipe(pkgs, SNAPSHOT) != first


def test_an_unreadable_record_is_no_record(tmp_path: Path) -> None:
    assert image.load(tmp_path) is None
    (tmp_path / image.RECORD).write_text("{not json")
    assert image.load(tmp_path) is None
    (tmp_path / image.RECORD).write_text(json.dumps({"kernel": "6.1.0-57-amd64"}))
    assert image.load(tmp_path) == {"kernel": "6.1.0-57-amd64"}


def test_a_store_without_the_snapshot_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(
        UserError, match=f"no OS image for network installs: no package snapshot is published in {tmp_path}"
    ):
        image.ensure(tmp_path, "20261204T120000Z", ROOT / "roles")
    assert image.main(["--store", str(tmp_path), "--snapshot", "20261204T120000Z", "--check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sovinfra: no OS image for network installs:") and "Traceback" not in err
    assert not (tmp_path / "netboot").exists()  # nothing made
