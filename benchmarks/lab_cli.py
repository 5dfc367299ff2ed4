"""What the lab benchmarks share: run a sovinfra verb in-process, and a converged air-gapped lab (the one
that is up, or one brought up, converged and taken down again)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from click.testing import CliRunner

from sovinfra import paths
from sovinfra.cli import cli
from sovinfra.lab import manager


def invoke(*args: str, ok: tuple[int, ...] = (0,)) -> str:
    """A sovinfra verb's stdout; a benchmark stops on any other exit code, showing the output's tail."""
    result = CliRunner().invoke(cli, list(args))
    if result.exit_code not in ok:
        raise SystemExit(f"sovinfra {' '.join(args)} failed ({result.exit_code}):\n{result.output[-3000:]}")
    return result.stdout


@contextmanager
def converged_lab(gpu_nodes: int) -> Iterator[str]:
    """The lab's inventory, converged: the lab that is up, or an air-gapped one with `gpu_nodes` GPU nodes
    (model, package snapshot, site) that is taken down afterwards."""
    inventory = str(paths.lab_inventory_dir())
    was_up = manager.is_up()
    try:
        if not was_up:
            manager.up(gpu_nodes, air_gapped=True, log=lambda m: print(m, flush=True))
            invoke("lab", "model")
            invoke("mirror", "packages", "sync", "-i", inventory)
            invoke("apply", "-i", inventory, "--json")
        yield inventory
    finally:
        if not was_up:
            manager.down(log=lambda _m: None)
