"""A run on disk: records.jsonl, raw tool outputs with their sha256, summary.json, junit.xml, a node_exporter
textfile and report.html; read back with every file checked; accepted as the baseline by copy."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from sovinfra import atomic
from sovinfra.acceptance import report
from sovinfra.acceptance.records import FAILING, Record, RecordError, from_json
from sovinfra.errors import UserError

FORMAT = 1
CURRENT = "current"  # in a baseline directory: the accepted run's id


def junit(summary: dict[str, Any], records: list[Record]) -> str:
    """JUnit XML: a testsuite per stage, a testcase per record (CI systems read it)."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f"<testsuites name={quoteattr('sovinfra acceptance ' + summary['run'])}>",
    ]
    for stage in dict.fromkeys(r.stage for r in records):
        these = [r for r in records if r.stage == stage]
        failures = sum(r.status in FAILING for r in these)
        skipped = sum(r.status == "skipped" for r in these)
        out.append(
            f'<testsuite name={quoteattr(stage)} tests="{len(these)}" failures="{failures}" '
            f'skipped="{skipped}">'
        )
        for r in these:
            name = quoteattr(f"{r.subject}: {r.check}")
            body = ""
            if r.status in FAILING:
                body = (
                    f"<failure message={quoteattr(r.status + ': ' + r.message)}>{escape(r.action)}</failure>"
                )
            elif r.status == "skipped":
                body = f"<skipped message={quoteattr(r.message)}/>"
            out.append(f"<testcase classname={quoteattr(r.host)} name={name}>{body}</testcase>")
        out.append("</testsuite>")
    out.append("</testsuites>")
    return "\n".join(out) + "\n"


def textfile(summary: dict[str, Any], records: list[Record]) -> str:
    """node_exporter textfile: the run's verdict and its failing results by host."""
    level = {"pass": 0, "warn": 1, "fail": 2}[summary["verdict"]]
    lines = [
        "# HELP sovinfra_acceptance_verdict Last acceptance run (0 pass, 1 warn, 2 fail).",
        "# TYPE sovinfra_acceptance_verdict gauge",
        f"sovinfra_acceptance_verdict {level}",
        "# HELP sovinfra_acceptance_failing Failing results of the last acceptance run, by host.",
        "# TYPE sovinfra_acceptance_failing gauge",
    ]
    for host in sorted({r.host for r in records}):
        count = sum(r.status in FAILING for r in records if r.host == host)
        lines.append(f'sovinfra_acceptance_failing{{host="{host}"}} {count}')
    return "\n".join(lines) + "\n"


def write(out: Path, summary: dict[str, Any], records: list[Record], raw: dict[str, bytes]) -> Path:
    """Write the run into a new directory next to `out` and rename it into place: a run is whole or absent."""
    if out.exists():
        raise UserError(f"{out}: already exists (a run directory is never overwritten)")
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "raw").mkdir(parents=True)
    hashes = {}
    for name, data in sorted(raw.items()):
        (tmp / "raw" / name).write_bytes(data)
        hashes[f"raw/{name}"] = hashlib.sha256(data).hexdigest()
    text = "".join(json.dumps(r.to_json(), sort_keys=True) + "\n" for r in records)
    (tmp / "records.jsonl").write_text(text)
    hashes["records.jsonl"] = hashlib.sha256(text.encode()).hexdigest()
    summary = {**summary, "format": FORMAT, "files": hashes}
    (tmp / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    (tmp / "junit.xml").write_text(junit(summary, records))
    (tmp / "sovinfra_acceptance.prom").write_text(textfile(summary, records))
    (tmp / "report.html").write_text(report.render(summary, records))
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    return out


def load(run_dir: Path) -> tuple[dict[str, Any], list[Record]]:
    """A run read back: its summary, and its records checked against the sha256 the summary holds."""
    summary_file = run_dir / "summary.json"
    if not summary_file.is_file():
        raise UserError(f"{summary_file}: no such file (not an acceptance run directory)")
    try:
        summary = json.loads(summary_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{summary_file}: not JSON ({exc})") from exc
    if not isinstance(summary, dict) or summary.get("format") != FORMAT:
        raise UserError(f"{summary_file}: format: not an acceptance run of format {FORMAT}")
    for key in ("run", "verdict", "files", "fingerprint"):
        if key not in summary:
            raise UserError(f"{summary_file}: {key}: missing")
    files = summary["files"]
    if not isinstance(files, dict) or "records.jsonl" not in files:
        raise UserError(f"{summary_file}: files: must list records.jsonl with its sha256")
    for rel, sha in sorted(files.items()):
        path = run_dir / rel
        if not path.is_file():
            raise UserError(f"{path}: missing (listed in {summary_file})")
        if hashlib.sha256(path.read_bytes()).hexdigest() != sha:
            raise UserError(
                f"{path}: sha256 differs from {summary_file} (the run was changed after it was written)"
            )
    records = []
    for n, line in enumerate((run_dir / "records.jsonl").read_text().splitlines(), 1):
        where = f"{run_dir / 'records.jsonl'}:{n}"
        try:
            records.append(from_json(json.loads(line), where))
        except json.JSONDecodeError as exc:
            raise UserError(f"{where}: not JSON ({exc.msg})") from exc
        except RecordError as exc:
            raise UserError(str(exc)) from exc
    return summary, records


def accept(run_dir: Path, baseline_dir: Path, force: bool) -> str:
    """Make a run the baseline: checked, copied in whole, then `current` switched to it atomically."""
    summary, _ = load(run_dir)
    if summary["verdict"] == "fail" and not force:
        raise UserError(f"{run_dir}: the run failed; a failing run becomes the baseline only with --force")
    run = str(summary["run"])
    target = baseline_dir / run
    if not target.exists():
        tmp = baseline_dir / f".{run}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(run_dir, tmp)
        os.replace(tmp, target)
    atomic.write_text(baseline_dir / CURRENT, run + "\n")
    return run


def home(inventory_dir: Path) -> Path:
    """Where an inventory's acceptance runs (runs/) and its accepted baseline (baseline/) live."""
    return inventory_dir / "acceptance"


def current(baseline_dir: Path) -> Path | None:
    """The accepted run in a baseline directory (None when nothing was accepted yet)."""
    pointer = baseline_dir / CURRENT
    if not pointer.is_file():
        return None
    run = pointer.read_text().strip()
    if not run or "/" in run or run.startswith("."):
        raise UserError(f"{pointer}: {run!r} is not a run id")
    return baseline_dir / run
