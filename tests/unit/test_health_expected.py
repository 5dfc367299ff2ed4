"""The health agent expects the driver the driver role pins (a real ansible-playbook render of the role's
defaults and template): never a second copy of the version to keep in step."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sovinfra.ansible import runner, strategy
from tests.conftest import ROOT

PLAYBOOK = ROOT / "tests" / "fixtures" / "playbooks" / "health_expected.yml"
DRIVER_DEFAULT = yaml.safe_load((ROOT / "roles" / "nvidia_driver" / "defaults" / "main.yml").read_text())[
    "nvidia_driver_version"
]


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.yml"
    path.write_text(
        "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
        '      ansible_python_interpreter: "{{ ansible_playbook_python }}"\n'
    )
    return path


def expected(inventory: Path, extra: dict) -> dict:
    shown: list[str] = []
    result = runner.run_playbook(
        runner.PlaybookRun(PLAYBOOK, inventory, extra_vars=extra),
        1,
        on_event=lambda e: shown.append(e["msg"]) if e.get("event") == "host_result" else None,
        strategy=strategy.Strategy("linear", None),
    )
    assert result.ok and len(shown) == 1, (result.recap.failures, result.stderr[-2000:])
    return yaml.safe_load(shown[0]) or {}


@pytest.mark.parametrize(
    ("extra", "driver"),
    [
        ({}, DRIVER_DEFAULT),  # the driver role's own default
        ({"nvidia_driver_version": "580.95.05"}, "580.95.05"),  # the inventory's pin
        (
            {"nvidia_driver_version": "580.95.05", "health_agent_expected": {"driver_version": "575.1"}},
            "575.1",
        ),
    ],
)
def test_the_expected_driver_follows_the_driver_pin(inventory: Path, extra: dict, driver: str) -> None:
    assert expected(inventory, extra)["driver_version"] == driver


def test_other_expectations_and_thresholds_are_kept() -> None:
    doc = expected(
        inventory,
        {"health_agent_expected": {"gpu_count": 8, "serials": None}, "health_agent_thresholds": {"a": 1}},
    )
    assert doc == {"driver_version": DRIVER_DEFAULT, "gpu_count": 8, "thresholds": {"a": 1}}
