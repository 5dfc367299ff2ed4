"""The lab is machine-wide: a checkout other than the one that brought it up may not change it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from sovinfra.cli import cli
from sovinfra.lab import manager, state

HOST = state.HostState("gpu1", "10.213.7.11", ["gpu_nodes"], 1234)


def test_only_the_owner_changes_a_running_lab() -> None:
    lab = state.LabState(owner="/srv/checkout-a", hosts={"gpu1": HOST})
    assert manager.owner_problem(lab, "/srv/checkout-a") is None
    problem = manager.owner_problem(lab, "/srv/checkout-b")
    assert problem and "/srv/checkout-a" in problem and "--force" in problem


@pytest.mark.parametrize(
    "recorded",
    [state.LabState(owner="/srv/checkout-a"), state.LabState(hosts={"gpu1": HOST})],
    ids=["no hosts", "no owner"],
)
def test_a_lab_without_hosts_or_owner_is_anyones(recorded: state.LabState) -> None:
    assert manager.owner_problem(recorded, "/srv/checkout-b") is None


def test_down_from_another_checkout_is_refused_before_anything_stops(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Through the CLI, with a state file naming another owner: exit 2, the state file untouched."""
    lab_dir = tmp_path
    monkeypatch.setenv("SOVINFRA_LAB_DIR", str(lab_dir))
    monkeypatch.setattr(manager, "_require_root", lambda: None)
    state.save(state.LabState(owner="/srv/elsewhere", hosts={"gpu1": HOST}))
    before = (lab_dir / "state.json").read_text()
    for args in (["lab", "down"], ["lab", "wipe", "gpu1"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, result.output
        assert "/srv/elsewhere" in result.output and "--force" in result.output
    assert (lab_dir / "state.json").read_text() == before
