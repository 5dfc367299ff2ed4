"""A rolling upgrade's plan and outcome: batch sizes, batches, planned changes, each host's result; bad
--batch values refused by the CLI before any host is touched."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from sovinfra.cli import cli
from sovinfra.errors import UserError
from sovinfra.fleet import rollout


@pytest.mark.parametrize(
    ("value", "fleet", "size"),
    [("1", 8, 1), ("3", 8, 3), ("8", 8, 8), ("25%", 8, 2), ("10%", 8, 1), ("100%", 8, 8), (" 50 % ", 3, 1)],
)
def test_batch_size(value: str, fleet: int, size: int) -> None:
    assert rollout.batch_size(value, fleet) == size


@pytest.mark.parametrize(
    ("value", "says"),
    [("0", "no nodes"), ("0%", "no nodes"), ("9", "more than the 8"), ("101%", "over 100%"),
     ("two", "a number of nodes"), ("-1", "a number of nodes"), ("", "a number of nodes")],
)  # fmt: skip
def test_bad_batch_sizes_are_refused(value: str, says: str) -> None:
    with pytest.raises(UserError, match=says):
        rollout.batch_size(value, 8)


def test_batches_follow_the_play_order() -> None:
    assert rollout.batches(["gpu3", "gpu1", "gpu2"], 2) == [["gpu1", "gpu2"], ["gpu3"]]
    assert rollout.batches([], 2) == []


def test_planned_changes_name_each_task_once_for_hosts_in_scope() -> None:
    changes = [
        {"host": "gpu1", "task": "nvidia_driver : Install the driver at 570.133.20", "msg": ""},
        {"host": "gpu1", "task": "nvidia_driver : Install the driver at 570.133.20", "msg": ""},
        {"host": "gpu2", "task": "inference_gateway : This node at the site endpoint, ready", "msg": ""},
        {"host": "mirror1", "task": "base : Install base packages", "msg": ""},
    ]
    assert rollout.planned_changes(changes, ["gpu1", "gpu2", "gpu3"]) == {
        "gpu1": ["Install the driver at 570.133.20"],
        "gpu2": ["This node at the site endpoint, ready"],
    }


def recap(hosts: list[str], failures: list[tuple[str, str, str]]) -> dict:
    return {"hosts": {h: {} for h in hosts}, "complete": True,
            "failures": [{"host": h, "task": t, "msg": m} for h, t, m in failures]}  # fmt: skip


def test_outcome_of_a_rollout_stopped_by_a_failed_batch() -> None:
    plan = [["gpu1", "gpu2"], ["gpu3", "gpu4"], ["gpu5"]]
    done = rollout.outcome(
        plan, recap(["gpu1", "gpu2", "gpu3", "gpu4"], [("gpu4", "The node is healthy", "xid 79")])
    )
    assert [[(r["host"], r["result"]) for r in b["hosts"]] for b in done] == [
        [("gpu1", "upgraded"), ("gpu2", "upgraded")],
        [("gpu3", "stopped"), ("gpu4", "failed")],
        [("gpu5", "not reached")],
    ]
    assert done[1]["hosts"][1] == {
        "host": "gpu4",
        "result": "failed",
        "task": "The node is healthy",
        "why": "xid 79",
    }


def test_outcome_of_a_complete_rollout() -> None:
    done = rollout.outcome([["gpu1"], ["gpu2"]], recap(["gpu1", "gpu2"], []))
    assert [b["hosts"] for b in done] == [
        [{"host": "gpu1", "result": "upgraded"}],
        [{"host": "gpu2", "result": "upgraded"}],
    ]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--batch", "0"], "--batch 0: a batch of no nodes"),
        (["--batch", "9"], "more than the 8 node(s)"),
        (["--batch", "150%"], "over 100% of the 8 nodes"),
        (["--limit", "gpu-a01", "--batch", "2"], "more than the 1"),
        (["--limit", "mirror01"], "not in group gpu_nodes"),
    ],
)
def test_cli_refuses_bad_batches_before_touching_a_host(
    example_inventory: Path, args: list[str], says: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SOVINFRA_LAB_DIR", str(tmp_path / "no-lab"))
    result = CliRunner().invoke(cli, ["upgrade", "-i", str(example_inventory), *args])
    assert result.exit_code == 2, result.output
    assert says in result.output and "Traceback" not in result.output
