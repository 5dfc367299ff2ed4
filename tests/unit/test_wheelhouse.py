"""The agent's wheelhouse carries wheels for every node architecture (real pip downloads from the index)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sovinfra.agent import wheelhouse


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("3.11", ("3.11", "x86_64")),
        ("3.12:aarch64", ("3.12", "aarch64")),
        ("3.11:x86_64", ("3.11", "x86_64")),
    ],
)
def test_targets_parse(text: str, target: tuple[str, str]) -> None:
    assert wheelhouse.parse_target(text) == target


@pytest.mark.parametrize("text", ["3.11:ppc64le", "3:aarch64", "three.eleven", "3.11.4"])
def test_bad_targets_are_refused_by_name(text: str) -> None:
    with pytest.raises(SystemExit, match="wheelhouse:"):
        wheelhouse.parse_target(text)


def test_an_arm64_node_gets_arm64_binary_wheels_once(tmp_path: Path) -> None:
    fetched = wheelhouse._dep_wheels(tmp_path, "3.11", "aarch64")
    assert len(fetched) == len(wheelhouse.AGENT_DEPS), fetched
    binary = [w.name for w in tmp_path.glob("*.whl") if "-none-any" not in w.name]
    assert binary and all(name.endswith("_aarch64.whl") for name in binary), binary
    assert any(name.lower().startswith("pyyaml-") for name in binary)
    assert wheelhouse._dep_wheels(tmp_path, "3.11", "aarch64") == []  # cached: a re-converge fetches nothing
    # An x86_64 node of the same Python still needs its own PyYAML: the arm64 wheel does not count.
    assert wheelhouse._dep_wheels(tmp_path, "3.11", "x86_64") == [
        f"PyYAML=={_version('PyYAML')} for Python 3.11 on x86_64"
    ]


def _version(dist: str) -> str:
    from importlib import metadata

    return metadata.version(dist)
