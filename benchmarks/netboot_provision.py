"""A blank VM to a verified GPU node through its (emulated) BMC and the site mirror alone, stage by stage,
against the container anchor in the same run.

  anchor: a wiped container GPU node (`lab wipe gpu1`) + `apply site --limit gpu1` + `verify health`;
  VM:     the OS image made from the snapshot (the netboot role's first converge with an install to do),
          then `sovinfra provision` of a blank libvirt VM in group gpu_nodes: power-on to the installer
          fetched (firmware, DHCP, iPXE, TFTP), the install (the server's files to the installer's reboot),
          the first boot (to ssh answering with the planted key), the converge, `verify health`.
Also: the bytes the netboot host sent the VM (the files its TFTP log names, by their sizes there), and the
lab's egress counter (must not move). The node's inventory names the image's kernel, so the snapshot holds
its headers and DKMS builds NVIDIA's (stand-in) module for it. Without KVM the VM runs under TCG.
Run as root, no lab up: python3 benchmarks/netboot_provision.py
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import textwrap
import threading
import time
import uuid
from pathlib import Path

import yaml
from click.testing import CliRunner

from sovinfra import paths
from sovinfra.cli import cli
from sovinfra.cli.mirror import default_store
from sovinfra.lab import bmc_emulator, config, manager, vm
from sovinfra.lab.model import encrypt
from sovinfra.mirror import apt_snapshots
from sovinfra.netboot import image
from tests import blank_vm

HOST, MAC = "pxe-gpu", "52:54:00:5f:03:01"
MARKS = {  # the VM's console, in order
    "installer up": "sovinfra-installer: on the network",
    "installed": "sovinfra-installer: installed; rebooting",
    "first boot": f"{HOST} login:",
}


def sovinfra(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    if result.exit_code != 0:
        raise SystemExit(f"sovinfra {' '.join(args)} failed: {result.output[-4000:]}")
    return result.output


def timed(what: str, fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    elapsed = time.perf_counter() - start
    print(f"{what:<52} {elapsed:7.1f} s", flush=True)
    return elapsed


def on_mirror(command: str) -> str:
    return subprocess.run(
        [*manager.ssh_argv("mirror1"), command], capture_output=True, text=True, check=True
    ).stdout


def watch_console(console: Path, seen: dict[str, float], stop: threading.Event) -> None:
    while not stop.is_set():
        text = console.read_text(errors="replace") if console.exists() else ""
        for mark, line in MARKS.items():
            if mark not in seen and line in text:
                seen[mark] = time.monotonic()
        time.sleep(1)


def inventory(work: Path, address: str, bmc_url: str, ca: Path, system: str, password: str) -> Path:
    target = work / "inventory"
    shutil.copytree(paths.lab_inventory_dir(), target)
    doc = yaml.safe_load((target / "hosts.yml").read_text())
    doc["all"]["children"]["netboot"] = {"hosts": {"mirror1": None}}
    doc["all"]["children"]["gpu_nodes"]["hosts"][HOST] = {"ansible_host": address}
    (target / "hosts.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    key = (paths.lab_dir() / "id_ed25519.pub").read_text().strip()
    (target / "group_vars" / "netboot.yml").write_text(
        yaml.safe_dump({"netboot_interface": "host0", "netboot_authorized_keys": [key]})
    )
    shutil.copy(ca, target / "bmc-ca.pem")
    cipher = textwrap.indent(encrypt(password, paths.lab_dir() / "vault-password"), "  ")
    (target / "host_vars").mkdir(exist_ok=True)
    (target / "host_vars" / f"{HOST}.yml").write_text(
        f"netboot_mac: '{MAC}'\nnetboot_disk: /dev/vda\nnetboot_firmware: bios\nbmc_address: '{bmc_url}'\n"
        f"bmc_system_id: {system}\nbmc_user: admin\nbmc_ca_file: ../bmc-ca.pem\n"
        f"bmc_password: !vault |\n{cipher}\n"
    )
    return target


def main() -> None:
    if manager.is_up():
        raise SystemExit("a lab is up: this benchmark brings up (and takes down) its own")
    lab_inventory = str(paths.lab_inventory_dir())
    manager.up(2, air_gapped=True, log=lambda _m: None)
    work = Path(tempfile.mkdtemp(prefix="sovinfra-netboot-bench-"))
    vault = str(paths.lab_dir() / "vault-password")
    try:
        sovinfra("lab", "model")
        sovinfra("apply", "-i", lab_inventory)  # its first converge makes and ships the snapshot
        print(f"libvirt driver: {vm.driver()}", flush=True)
        anchor = {
            "wipe": timed("container: lab wipe gpu1", lambda: manager.wipe("gpu1", log=lambda _m: None)),
            "converge": timed("container: apply site --limit gpu1",
                              lambda: sovinfra("apply", "site", "-i", lab_inventory, "--limit", "gpu1")),
            "verify": timed("container: verify health --limit gpu1",
                            lambda: sovinfra("verify", "health", "-i", lab_inventory, "--limit", "gpu1")),
        }  # fmt: skip
        address = str(config.subnet().network_address + 160)
        nic = (
            f"<interface type='bridge'><source bridge='{config.BRIDGE}'/><mac address='{MAC}'/>"
            "<model type='virtio'/></interface>"
        )
        console = work / "console.log"
        with blank_vm.defined(
            f"sovinfra-bench-{os.getpid()}", work, nic, vm.DEFAULT_MEMORY_MIB, console, "bios", 32
        ) as domain:
            password = "bmc-" + uuid.uuid4().hex[:12]
            system = blank_vm.virsh("domuuid", domain)
            emulator = bmc_emulator.start(work / "bmc", "127.0.0.1", 18500, "admin", password, [system])
            try:
                inv = str(inventory(work, address, emulator.url, emulator.ca_file, system, password))
                install = ("apply", "netboot", "-i", inv, "--limit", "mirror1", "--vault-password-file",
                           vault, "-e", json.dumps({"netboot_install": [HOST]}))  # fmt: skip
                # As an operator adds network boot: the snapshot with the netboot host's and the image's
                # packages, the whole site on the mirror host (base moves apt onto it, then the netboot
                # service), the image made from it. Its kernel is then the node's: DKMS builds for it, and
                # the snapshot holds its headers (the inventory names it, so the sync adds them); then the
                # image of that snapshot.
                sovinfra("mirror", "packages", "sync", "-i", inv)
                sovinfra("apply", "-i", inv, "--limit", "mirror1", "--no-lock", "--vault-password-file",
                         vault)  # fmt: skip
                sovinfra(*install)
                snapshot = apt_snapshots.current(default_store()) or ""
                kernel = image.load(image.image_dir(default_store(), snapshot))
                assert kernel, "no image record after the netboot converge"
                with (Path(inv) / "host_vars" / f"{HOST}.yml").open("a") as fh:
                    fh.write(f"nvidia_driver_kernel_release: {kernel['kernel']}\n")
                sovinfra("mirror", "packages", "sync", "-i", inv)
                sovinfra("apply", "mirror", "-i", inv, "--limit", "mirror1")
                image_s = timed("VM: the OS image made and served (netboot role)", lambda: sovinfra(*install))
                egress = manager.egress_packets()
                seen: dict[str, float] = {}
                stop = threading.Event()
                threading.Thread(target=watch_console, args=(console, seen, stop), daemon=True).start()
                start = time.monotonic()
                # Its record is read whatever the outcome: the figures of the stages it passed are printed
                # before a failure ends the benchmark.
                result = CliRunner().invoke(
                    cli, ["provision", HOST, "--yes", "-i", inv, "--vault-password-file", vault, "--json"]
                )
                out = result.output
                total = time.monotonic() - start
                stop.set()
                record = json.loads(out[out.index("{") :])
                steps = {s["step"]: s["seconds"] for s in record["steps"]}
                log = on_mirror("journalctl -u sovinfra-netboot --no-pager -o cat --since '-3h'")
                sent = sorted(set(re.findall(rf"sent (\S+) to {re.escape(address)}\b", log)))
                # The server's own file is gone once installed (a few hundred bytes): what is still there.
                listed = " ".join(sent)
                sizes = on_mirror(
                    f"for f in {listed}; do [ -e $f ] && stat -c '%s %n' $f; done; true"
                ).split()
                sent_bytes = sum(int(n) for n in sizes[::2])
                egress_after = manager.egress_packets()
            finally:
                bmc_emulator.stop(emulator.pid)
        stages = {
            "boot (netboot step, BMC, firmware: installer up)": seen["installer up"] - start,
            "install (to the installer's reboot)": seen["installed"] - seen["installer up"],
            "first boot (to the login prompt)": seen["first boot"] - seen["installed"],
            "converge (apply site --limit, as a GPU node)": steps.get("converge", float("nan")),
            "verify health": steps.get("health", float("nan")),
        }
        print()
        for what, seconds in stages.items():
            print(f"VM: {what:<48} {seconds:7.1f} s")
        print(f"VM: provision in all (from its first network step)          {total:7.1f} s")
        print(f"bytes the netboot host sent the VM: {sent_bytes} ({len(sent)} files: {', '.join(sent)})")
        print(f"lab egress packets during the install: {egress} before, {egress_after} after")
        vm_s, anchor_s = image_s + total, sum(anchor.values())
        if result.exit_code != 0 or not record["ok"]:
            raise SystemExit(f"provision failed: {out[-4000:]}")
        converge_ratio = steps["converge"] / anchor["converge"]
        print(f"\nblank VM to a verified GPU node / wiped container node to verified: {vm_s / anchor_s:.2f}x "
              f"({vm_s:.0f} s / {anchor_s:.0f} s); converge alone: {converge_ratio:.2f}x")  # fmt: skip
    finally:
        manager.down(log=lambda _m: None)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
