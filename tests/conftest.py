from __future__ import annotations

import functools
import os
import select
from pathlib import Path
from typing import IO, NoReturn

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests without the lab first (timing tests then run on a quiet machine, before lab hosts share its
    cores), then the lab's, then those that take the lab down (a stable sort keeps each part's order).
    Every test that uses the lab carries the lab marker, so `-m "not lab"` never brings one up."""
    unmarked = [
        i.nodeid for i in items if "lab" in getattr(i, "fixturenames", ()) and not i.get_closest_marker("lab")
    ]
    if unmarked:
        raise pytest.UsageError("tests using the lab without the lab marker: " + ", ".join(unmarked))
    items.sort(
        key=lambda item: (
            item.get_closest_marker("lab_last") is not None,
            item.get_closest_marker("lab") is not None,
        )
    )


def trusted(text: str) -> str:
    """A string Ansible's templar may render: ansible-core 2.19+ renders only strings marked as trusted
    templates; older versions render every string."""
    try:
        from ansible.template import trust_as_template
    except ImportError:
        return text
    return trust_as_template(text)  # a tagged str: str() would drop the mark


@functools.cache
def ansible_plugins() -> None:
    """Ansible's plugins (lookups such as `file`) loaded once per test session, as a play has them."""
    from ansible.plugins.loader import init_plugin_loader

    init_plugin_loader()


def readline(stream: IO[str], timeout: float) -> str:
    """A line from a child's pipe, or a failure after `timeout` seconds: a hung child never hangs a test.

    select() sees the pipe, not the text already buffered: use it for a first line, or lines written
    apart; a log of many lines is read by a thread instead (tests/integration/test_site_registry.py)."""
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        pytest.fail(f"no line from the child within {timeout} s", pytrace=False)
    return stream.readline()


def missing(reason: str) -> NoReturn:
    """A precondition (tool, privilege) is missing: a skip on a workstation, a failure in CI (CI set)."""
    if os.environ.get("CI"):
        pytest.fail(f"CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def example_inventory() -> Path:
    return ROOT / "inventory" / "example"


def two_nodes(directory: Path, group: str, group_vars: dict) -> Path:
    """An inventory of GPU nodes n1 and n2, n2 also in `group`, whose group_vars file (returned) holds
    `group_vars`: how a setting for some hosts is seen by them and not by the others."""
    hosts = {
        "all": {
            "children": {"gpu_nodes": {"hosts": {"n1": None, "n2": None}}, group: {"hosts": {"n2": None}}}
        }
    }
    (directory / "hosts.yml").write_text(yaml.safe_dump(hosts))
    (directory / "group_vars").mkdir()
    path = directory / "group_vars" / f"{group}.yml"
    path.write_text(yaml.safe_dump(group_vars))
    return path
