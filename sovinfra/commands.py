"""Running commands on the control node (the lab, image and tree builders), with errors a person can read."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from sovinfra.errors import UserError


def run(
    cmd: Sequence[str], *, check: bool = True, input_text: str | None = None, cwd: Path | None = None
) -> str:
    """Run a command, return its stdout; on failure raise UserError with the command and its stderr."""
    try:
        proc = subprocess.run(
            list(cmd), input=input_text, capture_output=True, text=True, check=False, cwd=cwd
        )
    except FileNotFoundError as exc:
        raise UserError(f"{cmd[0]} is not installed (scripts/setup installs it)") from exc
    if check and proc.returncode != 0:
        raise UserError(f"`{' '.join(cmd)}` failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    return proc.stdout
