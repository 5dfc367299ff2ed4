"""The site package snapshot's pure parts: naming, the need, filters, upstream declarations, shipping
order, prune choice, and gpgv's verdict as apt would give it."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from sovinfra import paths
from sovinfra.errors import UserError
from sovinfra.inventory import model
from sovinfra.mirror import apt_plan, gpgv_apt, tree_delta

ROLES = paths.project_root() / "roles"
DEBIAN = {
    "name": "debian",
    "url": "http://deb.example/debian/",
    "distributions": ["bookworm"],
    "keyring": "/usr/share/keyrings/debian-archive-keyring.gpg",
    "key_fingerprints": ["b8b8 0b5b 623e ab6a d877 5c45 b7c5 d7d6 3509 47f8"],
}


def test_snapshot_ids_are_utc_seconds_and_sort_by_age() -> None:
    a = apt_plan.snapshot_id(datetime(2026, 12, 2, 9, 5, 7, tzinfo=UTC))
    b = apt_plan.snapshot_id(datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC))
    assert a == "20261202T090507Z" and sorted([b, a]) == [a, b]
    # The shape a killed sync's leftovers are recognised by.
    assert apt_plan.SNAPSHOT_ID.match(a) and not apt_plan.SNAPSHOT_ID.match("latest")


def test_upstreams_parse_with_normalised_fingerprints() -> None:
    (up,) = apt_plan.parse_upstreams([DEBIAN], "f.yml")
    assert up.url == "http://deb.example/debian" and up.components == ("main",)
    assert up.key_fingerprints == ("B8B80B5B623EAB6AD8775C45B7C5D7D6350947F8",)
    assert up.mirror_names() == [("debian-bookworm", "bookworm")]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"key_fingerprints": ["ABCD"]}, r"\[0\]\.key_fingerprints: 'ABCD' is not a 40-hex"),
        ({"key_fingerprints": []}, r"\[0\]\.key_fingerprints: must be a non-empty list"),
        ({"url": "ftp://x"}, r"\[0\]\.url: 'ftp://x' must be an http"),
        ({"name": "Debian"}, r"\[0\]\.name: 'Debian' must be lower-case"),
        ({"distribution": "bookworm"}, r"\[0\]\.distribution: unknown key"),
        ({"keyring": ""}, r"\[0\]\.keyring: required"),
    ],
)
def test_bad_upstreams_name_the_file_entry_and_key(change: dict[str, object], message: str) -> None:
    with pytest.raises(
        UserError, match=r"group_vars/model_mirror\.yml: model_mirror_apt_upstreams" + message
    ):
        apt_plan.parse_upstreams([{**DEBIAN, **change}], "group_vars/model_mirror.yml")


def test_an_upstream_name_used_twice_is_refused() -> None:
    with pytest.raises(UserError, match="name 'debian' is used twice"):
        apt_plan.parse_upstreams([DEBIAN, DEBIAN], "f")


def test_role_default_upstreams_are_valid_and_pin_debian_keys() -> None:
    inv = model.load(paths.project_root() / "inventory" / "example")
    upstreams, arches = apt_plan.site_upstreams(inv, ROLES)
    assert arches == ["amd64"]
    assert [u.name for u in upstreams] == [
        "debian", "debian-security", "nvidia-cuda", "nvidia-container-toolkit"
    ]  # fmt: skip
    assert all(u.key_fingerprints for u in upstreams)
    # NVIDIA's are flat, with their keys fetched and pinned to the fingerprints NVIDIA publishes.
    cuda = upstreams[2]
    assert cuda.flat and cuda.mirror_names() == [("nvidia-cuda", "./")]
    assert cuda.aptly_source("./") == [cuda.url + "/", "./"]
    assert cuda.key_fingerprints == ("EB693B3035CD5710E231E123A4B469963BF863CC",)
    assert upstreams[0].aptly_source("bookworm") == ["http://deb.debian.org/debian", "bookworm", "main"]


def test_a_flat_upstream_has_no_distributions() -> None:
    flat = {k: v for k, v in DEBIAN.items() if k != "distributions"}
    (up,) = apt_plan.parse_upstreams([{**flat, "flat": True}], "f.yml")
    assert up.flat and up.components == () and up.mirror_names() == [("debian", "./")]
    with pytest.raises(UserError, match=r"f\.yml: model_mirror_apt_upstreams\[0\]\.distributions: a flat"):
        apt_plan.parse_upstreams([{**DEBIAN, "flat": True}], "f.yml")
    with pytest.raises(UserError, match=r"\[0\]\.flat: must be true or false"):
        apt_plan.parse_upstreams([{**flat, "flat": "yes"}], "f.yml")


def _inventory(tmp_path: Path, group_vars: dict[str, dict[str, object]]) -> model.Inventory:
    hosts = {
        "all": {
            "children": {
                "gpu_nodes": {"hosts": {"gpu1": None, "gpu2": {"container_runtime_engine": "podman"}}},
                "model_mirror": {"hosts": {"mirror1": None}},
            }
        }
    }
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(hosts))
    for group, values in group_vars.items():
        (tmp_path / "group_vars").mkdir(exist_ok=True)
        (tmp_path / "group_vars" / f"{group}.yml").write_text(yaml.safe_dump(values))
    return model.load(tmp_path)


def test_need_comes_from_roles_and_every_hosts_settings(tmp_path: Path) -> None:
    inv = _inventory(
        tmp_path,
        {
            "gpu_nodes": {"base_extra_packages": ["htop"]},
            "model_mirror": {"model_mirror_apt_packages": ["tmux"]},
        },
    )
    need = apt_plan.needed_packages(inv, ROLES)
    # The roles' own lists (base defaults, *_os_packages), per-group extras, each GPU node's runtime.
    for name in ("curl", "rsync", "nginx", "python3-venv", "libgomp1", "libyaml-0-2", "htop", "tmux"):
        assert name in need
    assert {"containerd", "runc", "podman"} <= set(need) and "docker.io" not in need
    # Templated names (the NVIDIA packages) come from NVIDIA's repositories, not the OS archive.
    assert not any("{{" in n or n.startswith("nvidia") for n in need)
    assert need == sorted(set(need))


def test_nvidia_need_is_what_each_gpu_node_pins(tmp_path: Path) -> None:
    inv = _inventory(
        tmp_path,
        {
            "gpu_nodes": {"fabric_manager_enabled": True, "cuda_toolkit_versions": ["12.8.1", "12.4.1"]},
            "model_mirror": {},
        },
    )
    (tmp_path / "host_vars").mkdir()
    # gpu2 is mid-upgrade: the snapshot must hold both drivers (and its fabric manager follows it).
    (tmp_path / "host_vars" / "gpu2.yml").write_text("nvidia_driver_version: '570.133.20'\n")
    inv = model.load(tmp_path)
    need = {(r.name, r.version): r.why for r in apt_plan.nvidia_need(inv, ROLES)}
    for name in ("nvidia-open", "nvidia-driver", "nvidia-kernel-open-dkms", "libnvidia-ml1", "nvidia-smi"):
        assert need[(name, "570.124.06")] == "gpu1: nvidia_driver_version"
        assert need[(name, "570.133.20")] == "gpu2: nvidia_driver_version"
    assert ("nvidia-fabricmanager-570", "570.133.20") in need  # follows the driver (an alias default)
    assert {("cuda-toolkit-12-8", "12.8.1"), ("cuda-toolkit-12-4", "12.4.1")} <= set(need)
    toolkit = {n for n, v in need if v == "1.18.0"}
    assert toolkit == {"nvidia-container-toolkit", "nvidia-container-toolkit-base",
                       "libnvidia-container-tools", "libnvidia-container1"}  # fmt: skip
    assert not any(n == "cuda-drivers" for n, _ in need)  # proprietary modules were not asked for
    # DCGM at its epoch-1 version: the core and every CUDA major's diagnostics (the role picks one).
    dcgm = {n for n, v in need if v == "1:4.2.3"}
    assert dcgm == {"datacenter-gpu-manager-4-core", "datacenter-gpu-manager-4-cuda12",
                    "datacenter-gpu-manager-4-cuda13"}  # fmt: skip
    assert apt_plan.Requirement("datacenter-gpu-manager-4-core", "1:4.2.3", "").met_by(
        {"datacenter-gpu-manager-4-core_1:4.2.3-1_amd64"}
    )
    # No mirror host pins anything NVIDIA.
    assert all(why.startswith("gpu") for why in need.values())


def test_nvidia_need_refuses_what_is_not_a_version(tmp_path: Path) -> None:
    inv = _inventory(tmp_path, {"gpu_nodes": {"cuda_toolkit_versions": ["12.8"]}})
    with pytest.raises(UserError, match=r"group_vars/gpu_nodes\.yml: cuda_toolkit_versions of gpu1: '12\.8'"):
        apt_plan.nvidia_need(inv, ROLES)
    inv = _inventory(tmp_path, {"gpu_nodes": {"nvidia_driver_version": "{{ lookup('env', 'V') }}"}})
    with pytest.raises(UserError, match=r"gpu_nodes\.yml: nvidia_driver_version of gpu1 must be a version"):
        apt_plan.nvidia_need(inv, ROLES)
    inv = _inventory(tmp_path, {"gpu_nodes": {"dcgm_version": "{{ v }}"}})
    with pytest.raises(UserError, match=r"gpu_nodes\.yml: dcgm_version of gpu1 must be a version"):
        apt_plan.nvidia_need(inv, ROLES)
    inv = _inventory(tmp_path, {"gpu_nodes": {"dcgm_enabled": False, "dcgm_version": "{{ v }}"}})
    assert not [r for r in apt_plan.nvidia_need(inv, ROLES) if r.name.startswith("datacenter-gpu-manager")]


def test_a_kernel_the_inventory_names_brings_its_headers(tmp_path: Path) -> None:
    inv = _inventory(tmp_path, {"gpu_nodes": {"nvidia_driver_kernel_release": "6.1.0-28-amd64"}})
    assert "linux-headers-6.1.0-28-amd64" in apt_plan.needed_packages(inv, ROLES)
    # The default is the host's fact, unknown before the host is read: not guessed.
    inv = _inventory(tmp_path, {"gpu_nodes": {}})
    assert not any(n.startswith("linux-headers-") for n in apt_plan.needed_packages(inv, ROLES))


def test_a_bad_package_name_in_the_inventory_is_refused(tmp_path: Path) -> None:
    inv = _inventory(tmp_path, {"all": {"base_extra_packages": ["Bad Name"]}})
    with pytest.raises(UserError, match="'Bad Name' is not a Debian package name"):
        apt_plan.needed_packages(inv, ROLES)


def test_filter_holds_the_base_system_and_the_need() -> None:
    assert apt_plan.filter_query(["curl", "nginx"]) == "Priority (required) | curl | nginx"
    assert apt_plan.missing_packages(["curl", "gone"], {"curl", "libc6"}) == ["gone"]
    pinned = apt_plan.Requirement("nvidia-smi", "570.124.06", "gpu1: nvidia_driver_version")
    query = apt_plan.filter_query(["curl"], [pinned], ["dkms (>= 3.0)"])
    assert query == "Priority (required) | curl | (nvidia-smi, $Version (% 570.124.06-*)) | dkms (>= 3.0)"
    # A version is met by NVIDIA's revision of it, never by a longer version that starts the same.
    assert pinned.met_by({"nvidia-smi_570.124.06-1_amd64"})
    assert not pinned.met_by({"nvidia-smi_570.124.061-1_amd64", "nvidia-smi_570.133.20-1_amd64"})


def test_unmet_dependencies_are_read_from_aptly_verify() -> None:
    report = (
        "Loading packages...\nVerifying...\nMissing dependencies (3):\n"
        "  libnvidia-ml1 (= 570.124.06-1) [amd64]\n  dkms [amd64]\n  dkms [amd64]\n"
        "  perl-base (= 5.36.0-7+deb12u3) [amd64]\n"
    )
    assert apt_plan.parse_unmet(report) == [
        "dkms",
        "libnvidia-ml1 (= 570.124.06-1)",
        "perl-base (= 5.36.0-7+deb12u3)",
    ]
    assert apt_plan.parse_unmet("Loading packages...\nVerifying...\nAll dependencies are satisfied.\n") == []


def test_prune_keeps_the_newest_and_never_the_current() -> None:
    ids = ["20260101T000000Z", "20260201T000000Z", "20260301T000000Z", "20260401T000000Z"]
    assert apt_plan.prune_plan(ids, "20260401T000000Z", 2) == ids[:2]
    # A rollback made an older snapshot current: it stays although it is not among the newest.
    assert apt_plan.prune_plan(ids, ids[0], 1) == ids[1:3]
    assert apt_plan.prune_plan(ids, None, 4) == []


def test_delta_ships_only_what_differs_pool_first_release_last() -> None:
    source = {
        "dists/B/InRelease": 10,
        "dists/B/main/binary-amd64/Packages.gz": 5,
        "pool/main/n/nginx/nginx_1_all.deb": 7,
        "pool/main/c/curl/curl_1_amd64.deb": 9,
        "dists/A/InRelease": 10,
    }
    have = {"dists/A/InRelease": 10, "pool/main/c/curl/curl_1_amd64.deb": 9, "dists/OLD/InRelease": 3}
    ship, stale = tree_delta.delta(source, have)
    assert ship == [
        "pool/main/n/nginx/nginx_1_all.deb",
        "dists/B/main/binary-amd64/Packages.gz",
        "dists/B/InRelease",
    ]
    assert stale == ["dists/OLD/InRelease"]
    # A file the host holds at another size (an interrupted copy) is shipped again.
    assert tree_delta.delta({"pool/x.deb": 4}, {"pool/x.deb": 2}) == (["pool/x.deb"], [])
    assert tree_delta.parse_listing("pool/x.deb\t4\nnot a row\n") == {"pool/x.deb": 4}


def test_delta_tool_writes_a_tar_of_the_missing_files(tmp_path: Path) -> None:
    root = tmp_path / "site"
    (root / "pool").mkdir(parents=True)
    (root / "dists" / "S").mkdir(parents=True)
    (root / "pool" / "a.deb").write_bytes(b"aaaa")
    (root / "dists" / "S" / "InRelease").write_bytes(b"signed")
    out = tmp_path / "d.tar"
    proc = subprocess.run(
        [sys.executable, "-m", "sovinfra.mirror.tree_delta", str(root), str(out)],
        input="pool/a.deb\t4\n",
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"files": 1' in proc.stdout and '"bytes": 6' in proc.stdout
    with tarfile.open(out) as tar:
        (member,) = tar.getmembers()
        assert member.name == "dists/S/InRelease" and member.uid == 0
        assert tar.extractfile(member).read() == b"signed"  # type: ignore[union-attr]


GOOD = "[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG 4CB5 key\n[GNUPG:] VALIDSIG 4CB5 2026 ...\n"
NO_KEY = "[GNUPG:] NEWSIG\n[GNUPG:] ERRSIG B8E5F131 1 10 00 1 9\n[GNUPG:] NO_PUBKEY B8E5F131\n"


def test_gpgv_accepts_as_apt_does() -> None:
    # One good signature by a pinned key, others by keys not pinned: accepted (apt's rule).
    assert gpgv_apt.trusted(GOOD + NO_KEY)
    # No good signature at all, or any bad one: refused.
    assert not gpgv_apt.trusted(NO_KEY)
    assert not gpgv_apt.trusted(GOOD + "[GNUPG:] BADSIG 4CB5 key\n")
    assert not gpgv_apt.trusted(GOOD.replace("GOODSIG", "EXPKEYSIG"))
    assert not gpgv_apt.trusted("")


def _shim(args: list[str]) -> tuple[int, bytes]:
    """Run the shim as aptly does (status on fd 3 of aptly's choosing); its exit code and status lines."""
    r, w = os.pipe()
    proc = subprocess.run(
        [sys.executable, "-m", "sovinfra.mirror.gpgv_apt", "--status-fd", str(w), *args],
        pass_fds=(w,),
        capture_output=True,
        check=False,
    )
    os.close(w)
    with open(r, "rb") as fh:
        return proc.returncode, fh.read()


def test_gpgv_shim_on_real_signatures(tmp_path: Path) -> None:
    """The real gpgv: a Release signed by the pinned key passes; with only other keys pinned it is refused."""
    home = tmp_path / "g"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--batch", "--quiet", "--homedir", str(home)]
    new_key = [*gpg, "--pinentry-mode", "loopback", "--passphrase", "", "--quick-generate-key"]
    subprocess.run([*new_key, "signer", "ed25519"], check=True, capture_output=True)
    release, sig = tmp_path / "Release", tmp_path / "Release.gpg"
    release.write_text("Origin: test\n")
    subprocess.run([*gpg, "--detach-sign", "-o", str(sig), str(release)], check=True)
    pinned = tmp_path / "pinned.gpg"
    pinned.write_bytes(subprocess.run([*gpg, "--export", "signer"], check=True, capture_output=True).stdout)
    subprocess.run([*new_key, "other", "ed25519"], check=True, capture_output=True)
    other = tmp_path / "other.gpg"
    other.write_bytes(subprocess.run([*gpg, "--export", "other"], check=True, capture_output=True).stdout)
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)

    rc, status = _shim(["--keyring", str(pinned), str(sig), str(release)])
    assert rc == 0 and b"VALIDSIG" in status
    rc, status = _shim(["--keyring", str(other), str(sig), str(release)])
    assert rc != 0 and b"NO_PUBKEY" in status
    release.write_text("Origin: tampered\n")
    rc, status = _shim(["--keyring", str(pinned), str(sig), str(release)])
    assert rc != 0 and b"BADSIG" in status


def test_installed_packages_join_the_need_but_pinned_names_stay_pinned() -> None:
    installed = {
        "gpu1": {
            "libc6": {"2.36-9+deb12u9"},
            "nvidia-driver": {"570.124.06-1"},
            "libgcc-s1:amd64": {"12.2.0-14"},
        },
        "mirror1": {"nginx": {"1.22.1-9"}},
    }
    pinned = [apt_plan.Requirement("nvidia-driver", "570.124.06", "gpu1: nvidia_driver_version")]
    assert apt_plan.installed_need(installed, pinned) == ["libc6", "libgcc-s1", "nginx"]


def test_a_key_url_that_does_not_answer_is_named(tmp_path: Path) -> None:
    from sovinfra.mirror import apt_snapshots

    flat = {k: v for k, v in DEBIAN.items() if k != "distributions"}
    (up,) = apt_plan.parse_upstreams([{**flat, "flat": True, "keyring": "http://127.0.0.1:9/key.pub"}], "f")
    with pytest.raises(
        UserError, match=r"upstream debian: keyring http://127\.0\.0\.1:9/key\.pub: cannot fetch"
    ):
        apt_snapshots.pinned_keyring(tmp_path, up)
    (up,) = apt_plan.parse_upstreams([{**DEBIAN, "keyring": str(tmp_path / "none.gpg")}], "f")
    with pytest.raises(UserError, match=r"keyring .*none\.gpg does not exist"):
        apt_snapshots.pinned_keyring(tmp_path, up)


def test_a_bare_dependency_is_also_asked_for_by_what_provides_it() -> None:
    query = apt_plan.filter_query(["nginx"], more=["container-network-stack", "perl-base (= 5.36.0-7)"])
    terms = query.split(" | ")
    assert "container-network-stack" in terms and "Provides (% *container-network-stack*)" in terms
    # A versioned dependency names a real package at a version: no provider pattern for it.
    assert "perl-base (= 5.36.0-7)" in terms and not any("perl-base*" in t for t in terms)


def test_provided_names_read_each_entry_of_each_field() -> None:
    fields = "container-network-stack (= 2)\nmail-transport-agent, default-mta\n\n"
    assert apt_plan.provided_names(fields) == {
        "container-network-stack",
        "mail-transport-agent",
        "default-mta",
    }


def test_the_installer_and_what_it_installs_are_in_only_for_a_site_that_network_boots(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    plain = _inventory(tmp_path / "plain", {})
    need = set(apt_plan.needed_packages(plain, ROLES))
    assert not apt_plan.serves_installer(plain)
    assert not need & {"dnsmasq-base", "ipxe", "grub-efi-amd64-bin", "initramfs-tools"}
    assert apt_plan.filter_query(["curl"]) == "Priority (required) | curl"

    (tmp_path / "boots").mkdir()
    _inventory(tmp_path / "boots", {})
    doc = yaml.safe_load((tmp_path / "boots" / "hosts.yml").read_text())
    doc["all"]["children"]["netboot"] = {"hosts": {"mirror1": None}}
    (tmp_path / "boots" / "hosts.yml").write_text(yaml.safe_dump(doc))
    booting = model.load(tmp_path / "boots")
    assert apt_plan.serves_installer(booting)
    need = set(apt_plan.needed_packages(booting, ROLES))
    # The netboot host's own, and the OS image's (made from the snapshot: BIOS and UEFI boot loaders, and
    # what its installer runs).
    assert {"dnsmasq-base", "ipxe"} <= need
    assert {"linux-image-amd64", "grub-pc-bin", "grub-efi-amd64-bin", "openssh-server", "python3"} <= need
    assert {"initramfs-tools", "busybox", "zstd", "fdisk", "dosfstools", "e2fsprogs"} <= need


# What a merged snapshot held (this lab's, 2026-12): perl-base updated by the security suite (priority
# required, so mirrored by name), perl and its library only at the release's version, pinning the old one.
U3, U4 = "5.36.0-7+deb12u3", "5.36.0-7+deb12u4"
PERL = [
    apt_plan.Stanza("perl", U3, f"perl-base (= {U3}), perl-modules-5.36 (>= {U3}), libperl5.36 (= {U3})", ""),
    apt_plan.Stanza("perl-base", U4, "libc6 (>= 2.35), dpkg (>= 1.17.17)", "perl"),
    apt_plan.Stanza("perl-base", U3, "libc6 (>= 2.35), dpkg (>= 1.17.17)", "perl"),
    apt_plan.Stanza("perl-modules-5.36", U3, "perl-base (>= 5.36.0-1)", "perl"),
    apt_plan.Stanza("libperl5.36", U3, "libc6 (>= 2.35), perl-modules-5.36 (>= 5.36.0-1)", "perl"),
    apt_plan.Stanza("libc6", "2.36-9+deb12u14", "libgcc-s1", "glibc"),
    apt_plan.Stanza("libc6", "2.36-9+deb12u7", "libgcc-s1", "glibc"),
    apt_plan.Stanza("dpkg", "1.21.23", "tar (>= 1.28-1)"),
    apt_plan.Stanza("hello", U3),  # another source at the same version string: not a sibling
]


def test_an_updated_package_whose_sibling_pins_its_old_version_is_mirrored_with_its_siblings() -> None:
    # apt would install perl-base u4 and then find perl's `perl-base (= u3)` unmet: perl and its source's
    # other binary packages at the update's version are to be mirrored from every upstream too, by exact
    # version (hello, another source at the same version string, is not).
    assert apt_plan.held_back(PERL) == [
        f"libperl5.36 (= {U4})",
        f"perl (= {U4})",
        f"perl-base (= {U3})",  # the dependency as written (met by the older version the merge keeps)
        f"perl-base (= {U4})",
        f"perl-modules-5.36 (= {U4})",
    ]


def test_a_snapshot_whose_newest_versions_fit_together_holds_nothing_back() -> None:
    fixed = [
        *PERL,
        apt_plan.Stanza("perl", U4, f"perl-base (= {U4}), perl-modules-5.36 (>= {U4}), libperl5.36 (= {U4})"),
        apt_plan.Stanza("perl-modules-5.36", U4, "perl-base (>= 5.36.0-1)", "perl"),
        apt_plan.Stanza("libperl5.36", U4, "libc6 (>= 2.35)", "perl"),
    ]
    assert apt_plan.held_back(fixed) == []  # the older versions the merge keeps do not count
    assert apt_plan.held_back(PERL[1:]) == []  # without perl: nothing pins the old perl-base


@pytest.mark.parametrize(
    ("depends", "held"),
    [
        ("python3:any (>= 3.11.2-1)", []),  # an architecture qualifier; met
        # what the tool needs; where python3 is ahead of what the tool pins, its source's packages at its
        # version; where an exact version is asked for, its source's packages at that version
        ("python3:any (>= 3.12)", ["python3:any (>= 3.12)"]),
        ("python3 (>= 1:3.0)", ["python3 (>= 1:3.0)"]),  # an epoch outranks any version without one
        ("python3 (<< 3.11.2-1)", ["python3 (<< 3.11.2-1)"]),  # nothing newer can help: the term alone
        ("python3 (= 3.11.3-1)", ["python3 (= 3.11.3-1)", "python3-minimal (= 3.11.3-1)"]),
        ("missing-pkg (= 1) | python3 (>= 3.11)", []),  # one alternative met
        ("missing-pkg (= 1)", []),  # not in the snapshot: aptly's own check names it
        ("python3 (>= 3.12) | missing-pkg", []),  # an alternative the snapshot lacks: aptly's to judge
        ("python3 (>> 3.11.2-1), python3 (= 3.11.2-1)", ["python3 (>> 3.11.2-1)"]),  # one of two unmet
    ],
)
def test_relations_are_judged_against_the_newest_version(depends: str, held: list[str]) -> None:
    stanzas = [
        apt_plan.Stanza("tool", "1.0-1", depends),
        apt_plan.Stanza("python3", "3.11.2-1", "", "python3-defaults"),
        apt_plan.Stanza("python3-minimal", "3.11.2-1", "", "python3-defaults"),
    ]
    assert apt_plan.held_back(stanzas) == held
