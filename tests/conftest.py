from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


def missing(reason: str) -> NoReturn:
    """A precondition (tool, privilege) is missing: a skip on a workstation, a failure in CI (CI set)."""
    if os.environ.get("CI"):
        pytest.fail(f"CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def example_inventory() -> Path:
    return ROOT / "inventory" / "example"
