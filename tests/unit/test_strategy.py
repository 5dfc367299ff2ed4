"""The strategy a run uses, and the environment ansible-playbook gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from sovinfra.ansible import runner, strategy

MITOGEN = Path("/site-packages/ansible_mitogen")


def test_mitogen_on_a_tested_ansible_core() -> None:
    chosen = strategy.choose("mitogen", (2, 19), MITOGEN)
    assert chosen == strategy.Strategy("mitogen_linear", MITOGEN / "plugins" / "strategy")


@pytest.mark.parametrize("version", [(2, 15), (2, 20), (3, 0)])
def test_untested_ansible_core_falls_back_to_linear_saying_why(version: tuple[int, int]) -> None:
    chosen = strategy.choose("mitogen", version, MITOGEN)
    assert (chosen.name, chosen.plugin_dir) == ("linear", None)
    assert chosen.notice and f"{version[0]}.{version[1]}" in chosen.notice


def test_missing_mitogen_falls_back_to_linear_saying_why() -> None:
    chosen = strategy.choose("mitogen", (2, 19), None)
    assert chosen.name == "linear" and chosen.notice and "not installed" in chosen.notice


def test_linear_asked_for_is_linear_without_notice() -> None:
    assert strategy.choose("linear", (2, 19), MITOGEN) == strategy.Strategy("linear", None)


def test_unknown_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="free"):
        strategy.choose("free", (2, 19), MITOGEN)


def test_version_parsing() -> None:
    assert strategy.parse_version("2.19.14") == (2, 19)
    assert strategy.parse_version("2.20.0rc1") == (2, 20)
    assert strategy.parse_version("devel") == (0, 0)


def test_installed_mitogen_is_the_pinned_one_and_usable_here() -> None:
    """The project's dependencies install Mitogen, and this machine's ansible-core is one it runs on."""
    chosen = strategy.for_run()
    assert chosen.notice is None, chosen.notice
    assert chosen.plugin_dir is not None and (chosen.plugin_dir / "mitogen_linear.py").is_file()


def test_environment_sets_the_strategy_and_ignores_the_callers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANSIBLE_STRATEGY", "free")
    monkeypatch.setenv("ANSIBLE_STRATEGY_PLUGINS", "/elsewhere")
    linear = runner.environment(3, strategy=strategy.Strategy("linear", None))
    assert linear["ANSIBLE_STRATEGY"] == "linear" and "ANSIBLE_STRATEGY_PLUGINS" not in linear
    mitogen = runner.environment(3, strategy=strategy.choose("mitogen", (2, 19), MITOGEN))
    assert mitogen["ANSIBLE_STRATEGY"] == "mitogen_linear"
    assert mitogen["ANSIBLE_STRATEGY_PLUGINS"] == str(MITOGEN / "plugins" / "strategy")


@pytest.mark.parametrize("value", ["False", "0", "no"])
def test_host_key_checking_stays_on_whatever_the_shell_says(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("ANSIBLE_HOST_KEY_CHECKING", value)
    assert runner.environment(1)["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    assert runner.environment(1, {"ANSIBLE_HOST_KEY_CHECKING": value})["ANSIBLE_HOST_KEY_CHECKING"] == "True"
