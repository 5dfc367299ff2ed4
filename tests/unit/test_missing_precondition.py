"""A missing tool or privilege skips a test on a workstation and fails it in CI."""

from __future__ import annotations

import pytest

from tests.conftest import missing


def test_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="nginx"):
        missing("nginx is not installed")


def test_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="CI: nginx"):
        missing("nginx is not installed")
