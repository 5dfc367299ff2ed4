"""DCGM's own diagnostics on a node (pyinfra fact): `dcgmi diag -r LEVEL -j`, what it printed, as text."""

from __future__ import annotations

from pyinfra.api import FactBase

from sovinfra.acceptance.dcgm import NOT_INSTALLED


class DcgmDiag(FactBase):
    """dcgmi's JSON document (its exit code is non-zero whenever a test fails: the document says which)."""

    def command(self, level: int) -> str:
        missing = f"command -v dcgmi >/dev/null || {{ echo {NOT_INSTALLED}; exit 0; }}"
        return f"{missing}; dcgmi diag -r {int(level)} -j 2>&1; true"

    def process(self, output: list[str]) -> str:
        return "\n".join(output)
