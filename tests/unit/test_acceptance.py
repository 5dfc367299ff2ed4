"""Acceptance records, baseline comparison, the run directory and its report (pure parts and files)."""

from __future__ import annotations

import json
import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from sovinfra.acceptance import baseline, report, rundir
from sovinfra.acceptance.records import (
    Record,
    RecordError,
    from_health,
    from_json,
    from_load,
    health_change,
    verdict,
)
from sovinfra.acceptance.run import in_budget, sweep_points
from sovinfra.errors import UserError
from sovinfra.inventory import model
from tests.conftest import two_nodes

GPUS = [
    {
        "index": 0,
        "name": "NVIDIA H200",
        "serial": "1650924060001",
        "bus_id": "00000000:19:00.0",
        "uuid": "GPU-a",
    },
    {
        "index": 1,
        "name": "NVIDIA H200",
        "serial": "1650924060002",
        "bus_id": "00000000:3B:00.0",
        "uuid": "GPU-b",
    },
]


def agent_doc(findings: list[dict[str, Any]] | None = None, gpus: list[dict[str, Any]] | None = None) -> dict:
    return {
        "status": "healthy",
        "driver_version": "570.133.20",
        "cuda_driver_version": "12.8",
        "gpus": GPUS if gpus is None else gpus,
        "findings": findings or [],
    }


def load_result(
    conc: int, ttft50: float, ttft99: float, tps: float, reasons: list[str] | None = None
) -> dict:
    return {
        "host": "gpu1",
        "service": "tiny",
        "concurrency": conc,
        "slo": {"ttft_ms": 500.0},
        "summary": {
            "ttft_ms": {"p50": ttft50, "p99": ttft99},
            "tpot_ms": {"p50": 10.0},
            "itl_ms": {"p50": 9.5, "p90": 12.0, "p99": 20.0},
            "output_tokens_per_s": tps,
            "goodput_requests": 8,
        },
        "reasons": reasons or [],
        "passed": not reasons,
    }


def test_health_findings_become_records_keyed_by_serial() -> None:
    doc = agent_doc(
        [{"check": "ecc", "severity": "fail", "message": "uncorrectable", "action": "drain", "gpu_index": 1}]
    )
    records = from_health("r1", "health start", "gpu1", doc)
    present = [r for r in records if r.check == "gpu present"]
    assert [(r.gpu_serial, r.gpu_uuid, r.bus_id) for r in present] == [
        ("1650924060001", "GPU-a", "00000000:19:00.0"),
        ("1650924060002", "GPU-b", "00000000:3B:00.0"),
    ]
    ecc = next(r for r in records if r.check == "ecc")
    assert (ecc.status, ecc.gpu_serial, ecc.gpu_uuid, ecc.action) == (
        "fail",
        "1650924060002",
        "GPU-b",
        "drain",
    )
    assert verdict(records) == "fail"


@pytest.mark.parametrize(
    ("status", "expected"), [("unreachable", "error"), ("agent_missing", "not-run"), ("bad_output", "error")]
)
def test_a_host_that_could_not_be_measured_fails(status: str, expected: str) -> None:
    records = from_health("r1", "health start", "gpu1", {"status": status, "error": "ssh: refused"})
    assert [(r.status, r.check) for r in records] == [(expected, "agent")]
    assert verdict(records) == "fail"


def test_no_records_is_a_failure_not_a_pass() -> None:
    assert verdict([]) == "fail"
    assert from_health("r1", "health start", "gpu1", {"status": "healthy", "gpus": [], "findings": []})[
        0
    ].status == ("not-run")


def test_health_at_the_end_is_judged_as_the_change_since_the_start() -> None:
    # As the agent reports them: with the GPU's serial (an index shifts when a GPU is lost: ...002 is
    # index 1 at the start, index 0 once ...001 is gone).
    warn = {"check": "temperature", "severity": "warn", "message": "82 C", "serial": "1650924060002"}
    start = from_health("r", "health start", "gpu1", agent_doc([{**warn, "gpu_index": 1}]))
    xid = {"check": "xid", "severity": "fail", "message": "Xid 79", "gpu_index": 0, "serial": "1650924060002"}
    end = from_health("r", "health end", "gpu1", agent_doc([{**warn, "gpu_index": 0}, xid], gpus=GPUS[1:]))
    changed = health_change("r", start, end)
    # The warning was there before (not new); the XID is new on GPU ...002; GPU ...001 is gone.
    assert sorted((r.check, r.gpu_serial, r.status) for r in changed) == [
        ("gpu present", "1650924060001", "fail"),
        ("xid", "1650924060002", "fail"),
    ]
    assert (
        health_change(
            "r", start, from_health("r", "health end", "gpu1", agent_doc([{**warn, "gpu_index": 1}]))
        )
        == []
    )


def test_an_endpoint_point_is_judged_against_its_slo() -> None:
    ok = from_load("r", load_result(4, 120.0, 300.0, 55.5))
    assert {r.check: r.status for r in ok} == {
        "ttft p50": "pass",
        "ttft p99": "pass",
        "tpot p50": "pass",
        "itl p50": "pass",
        "itl p90": "pass",
        "itl p99": "pass",
        "tokens/s": "pass",
        "slo": "pass",
    }
    assert {r.endpoint for r in ok} == {"tiny@c4"}
    p99 = next(r for r in ok if r.check == "ttft p99")
    assert (p99.value, p99.threshold, p99.threshold_source) == (300.0, 500.0, "inference_services slo")
    slow = from_load("r", load_result(8, 400.0, 900.0, 40.0, ["goodput 50% of requests met the SLO"]))
    p99 = next(r for r in slow if r.check == "ttft p99")
    assert (p99.status, p99.message) == ("fail", "900 ms > SLO 500 ms") and p99.action
    assert {r.check: r.status for r in slow}["slo"] == "fail"
    gone = from_load(
        "r",
        {
            "host": "gpu1",
            "service": "tiny",
            "concurrency": 2,
            "summary": None,
            "reasons": ["ssh: jump refused"],
        },
    )
    assert [(r.status, r.message) for r in gone] == [("error", "ssh: jump refused")]


def test_a_missing_measurement_is_not_a_pass() -> None:
    result = load_result(4, 120.0, 300.0, 0.0)
    result["summary"]["ttft_ms"] = {"p50": None, "p99": None}
    statuses = {r.check: r.status for r in from_load("r", result)}
    assert statuses["ttft p50"] == statuses["ttft p99"] == statuses["tokens/s"] == "not-run"


def run_records(
    ttft: float = 120.0, tps: float = 50.0, gpus: list[dict[str, Any]] | None = None
) -> list[Record]:
    return [
        *from_health("now", "health start", "gpu1", agent_doc(gpus=gpus)),
        *from_load("now", load_result(4, ttft, ttft * 2, tps)),
    ]


# By host, as `baseline.per_host` gives them.
TOL = {"gpu1": {"ttft_p50_pct": 30.0, "tokens_per_s_pct": 25.0}}


def test_baseline_same_run_is_clean() -> None:
    compared = baseline.compare("now", run_records(), run_records(), {}, TOL)
    assert {r.status for r in compared} == {"pass"} and {r.check for r in compared} == {
        "ttft p50",
        "tokens/s",
    }


def test_baseline_within_and_outside_tolerance() -> None:
    within = baseline.compare("now", run_records(ttft=150.0, tps=40.0), run_records(), {}, TOL)
    assert {r.check: r.status for r in within} == {"ttft p50": "pass", "tokens/s": "pass"}
    slower = baseline.compare("now", run_records(ttft=200.0, tps=30.0), run_records(), {}, TOL)
    by_check = {r.check: r for r in slower}
    assert by_check["ttft p50"].status == "fail" and by_check["ttft p50"].value == pytest.approx(66.7)
    assert by_check["tokens/s"].status == "fail" and by_check["tokens/s"].value == pytest.approx(40.0)
    assert "120 -> 200 ms" in by_check["ttft p50"].message and by_check["ttft p50"].endpoint == "tiny@c4"


def test_baseline_new_lost_and_swapped_gpus() -> None:
    swapped = [GPUS[0], {**GPUS[1], "serial": "1650924069999", "uuid": "GPU-z"}]
    compared = baseline.compare("now", run_records(gpus=swapped), run_records(), {}, TOL)
    gpu = sorted((r.status, r.gpu_serial, r.message) for r in compared if r.check == "gpu identity")
    assert gpu == [
        (
            "fail",
            "1650924060002",
            "GPU 1650924060002 of the baseline is missing; bus 00000000:3B:00.0 now holds 1650924069999",
        ),
        ("warn", "1650924069999", "new GPU 1650924069999, no baseline"),
    ]
    lost = baseline.compare("now", run_records(gpus=GPUS[:1]), run_records(), {}, TOL)
    assert [(r.status, r.gpu_serial) for r in lost if r.check == "gpu identity"] == [
        ("fail", "1650924060002")
    ]


def test_a_changed_fingerprint_is_not_comparable_rather_than_a_regression() -> None:
    changed = baseline.fingerprint_changes(
        {"gpu1": {"driver": "575.51.03", "kernel": "6.1"}},
        {"gpu1": {"driver": "570.133.20", "kernel": "6.1"}},
    )
    assert changed == {"gpu1": "driver 570.133.20 -> 575.51.03"}
    compared = baseline.compare("now", run_records(ttft=400.0), run_records(), changed, TOL)
    assert {(r.check, r.status) for r in compared} == {("ttft p50", "skipped"), ("tokens/s", "skipped")}
    assert all("not comparable: driver 570.133.20 -> 575.51.03" in r.message for r in compared)


def test_the_site_endpoint_is_not_comparable_when_a_node_behind_it_moved() -> None:
    def site(ttft: float, host: str = "gpu2") -> list[Record]:
        node = {**load_result(4, ttft, ttft * 2, 50.0), "host": host}
        gateway = {**load_result(4, ttft, ttft * 2, 50.0), "host": "mirror1", "service": "site:tiny-llama"}
        return [*from_load("now", node), *from_load("now", gateway)]

    then = {
        "gpu1": {"driver": "570.133.20", "endpoint tiny": "tiny-llama"},
        "gpu2": {"driver": "570.133.20", "endpoint tiny": "tiny-llama"},
        "mirror1": {"kernel": "6.1", "endpoint site:tiny-llama": "tiny-llama"},
    }
    now = {**then, "gpu1": {**then["gpu1"], "driver": "575.51.03"}}
    changed = baseline.fingerprint_changes(now, then)
    assert changed == {
        "gpu1": "driver 570.133.20 -> 575.51.03",
        "site:tiny-llama": "gpu1: driver 570.133.20 -> 575.51.03",
    }
    tolerances = {h: TOL["gpu1"] for h in ("gpu2", "mirror1")}
    compared = baseline.compare("now", site(400.0), site(120.0), changed, tolerances)
    status = {(r.host, r.check): r.status for r in compared}
    # gpu2 did not move: its slower TTFT is a regression; the site endpoint's is not comparable.
    assert status[("gpu2", "ttft p50")] == "fail"
    assert status[("mirror1", "ttft p50")] == "skipped"
    assert "gpu1: driver 570.133.20 -> 575.51.03" in next(r.message for r in compared if r.host == "mirror1")
    # Nothing moved: the site endpoint is judged like any endpoint.
    compared = baseline.compare(
        "now", site(400.0), site(120.0), baseline.fingerprint_changes(then, then), tolerances
    )
    assert {(r.host, r.check): r.status for r in compared}[("mirror1", "ttft p50")] == "fail"


def test_a_measurement_the_baseline_had_and_this_run_lacks_fails() -> None:
    now = [r for r in run_records() if r.check != "tokens/s"]
    compared = baseline.compare("now", now, run_records(), {}, TOL)
    assert [(r.check, r.status) for r in compared if r.status == "fail"] == [("tokens/s", "fail")]


def test_tolerances_are_data_a_site_may_override(tmp_path: Path) -> None:
    assert set(baseline.tolerances()) == {"ttft_p50_pct", "tokens_per_s_pct"}
    site = tmp_path / "tolerances.yml"
    site.write_text("ttft_p50_pct: 200\n")
    assert baseline.tolerances(site) == {**baseline.tolerances(), "ttft_p50_pct": 200.0}
    for text, match in (
        ("ttft: 5\n", "ttft: unknown tolerance"),
        ("ttft_p50_pct: -1\n", "ttft_p50_pct: must be"),
        ("[1]\n", "must be a mapping"),
        ("ttft_p50_pct: [\n", "cannot read"),
    ):
        site.write_text(text)
        with pytest.raises(UserError, match=f"{site}: {match}"):
            baseline.tolerances(site)


def test_a_group_or_host_sets_its_own_tolerances_and_the_file_wins(tmp_path: Path) -> None:
    group = two_nodes(tmp_path, "lab", {"acceptance_tolerances": {"ttft_p50_pct": 300}})
    defaults = baseline.tolerances()
    got = baseline.per_host(model.load(tmp_path))
    assert got == {"n1": defaults, "n2": {**defaults, "ttft_p50_pct": 300.0}}
    forced = tmp_path / "forced.yml"
    forced.write_text("tokens_per_s_pct: 90\n")
    got = baseline.per_host(model.load(tmp_path), forced)
    assert got["n2"] == {"ttft_p50_pct": 300.0, "tokens_per_s_pct": 90.0}
    assert got["n1"] == {**defaults, "tokens_per_s_pct": 90.0}
    for value, match in (
        ({"ttft": 5}, "ttft: unknown tolerance"),
        ({"ttft_p50_pct": "x"}, "ttft_p50_pct: must be a percentage"),
        (30, "must be a mapping"),
    ):
        group.write_text(yaml.safe_dump({"acceptance_tolerances": value}))
        where = f"{group}: acceptance_tolerances (host n2)"
        with pytest.raises(UserError, match=re.escape(where) + ": " + match):
            baseline.per_host(model.load(tmp_path))


def test_sweep_points() -> None:
    assert sweep_points(8, "quick") == [2, 4, 8]
    assert sweep_points(1, "quick") == [1]
    assert sweep_points(8, "full") == [1, 2, 4, 6, 8, 12]


def test_a_stage_past_its_budget_is_an_error_and_the_run_goes_on() -> None:
    started = time.monotonic()
    cut = in_budget("endpoints", 0.2, lambda: time.sleep(5) or [], "r", ["gpu1", "gpu2"])
    assert time.monotonic() - started < 2
    assert [(r.host, r.status, r.message) for r in cut] == [
        ("gpu1", "error", "cut at its budget of 0.2 s"),
        ("gpu2", "error", "cut at its budget of 0.2 s"),
    ]

    def boom() -> list[Record]:
        raise OSError("no route to host")

    failed = in_budget("facts", 5, boom, "r", ["gpu1"])
    assert [(r.status, r.message) for r in failed] == [
        ("error", "the stage failed: OSError: no route to host")
    ]


def summary_of(records: list[Record], run: str = "20261203T060000Z", base: str | None = None) -> dict:
    return {
        "run": run,
        "verdict": verdict(records),
        "profile": "quick",
        "inventory": "inventory/lab",
        "started": "2026-12-03T06:00:00+00:00",
        "seconds": 12.5,
        "baseline": base,
        "fingerprint": {"gpu1": {"driver": "570.133.20"}},
    }


def test_run_directory_round_trip_junit_and_textfile(tmp_path: Path) -> None:
    records = run_records()
    out = rundir.write(tmp_path / "runs" / "r1", summary_of(records), records, {"health-start.json": b"{}"})
    summary, back = rundir.load(out)
    assert back == records and summary["verdict"] == "pass"
    assert summary["files"]["raw/health-start.json"] == (
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    )
    suites = ET.parse(out / "junit.xml").getroot()
    assert sum(int(s.get("tests", 0)) for s in suites) == len(records)
    prom = (out / "sovinfra_acceptance.prom").read_text()
    assert "sovinfra_acceptance_verdict 0" in prom and 'sovinfra_acceptance_failing{host="gpu1"} 0' in prom
    with pytest.raises(UserError, match="already exists"):
        rundir.write(out, summary_of(records), records, {})
    assert not list((tmp_path / "runs").glob(".*"))  # no half-written run left behind


def test_a_changed_run_is_refused_naming_the_file(tmp_path: Path) -> None:
    records = run_records()
    out = rundir.write(tmp_path / "r1", summary_of(records), records, {"endpoints.json": b"[]"})
    (out / "raw" / "endpoints.json").write_bytes(b"[1]")
    with pytest.raises(UserError, match=r"raw/endpoints.json: sha256 differs"):
        rundir.load(out)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda d: (d / "summary.json").write_text("{"), "summary.json: not JSON"),
        (lambda d: (d / "summary.json").unlink(), "summary.json: no such file"),
        (lambda d: (d / "summary.json").write_text('{"format": 9}'), "format: not an acceptance run"),
    ],
)
def test_a_corrupt_or_foreign_baseline_is_named(tmp_path: Path, change: Any, match: str) -> None:
    records = run_records()
    out = rundir.write(tmp_path / "r1", summary_of(records), records, {})
    change(out)
    with pytest.raises(UserError, match=match):
        rundir.load(out)


def test_a_record_line_that_is_not_a_record_is_named(tmp_path: Path) -> None:
    records = run_records()
    out = rundir.write(tmp_path / "r1", summary_of(records), records, {})
    lines = (out / "records.jsonl").read_text().splitlines()
    lines[2] = json.dumps({**json.loads(lines[2]), "status": "great"})
    text = "\n".join(lines) + "\n"
    (out / "records.jsonl").write_text(text)
    doc = json.loads((out / "summary.json").read_text())
    doc["files"]["records.jsonl"] = __import__("hashlib").sha256(text.encode()).hexdigest()
    (out / "summary.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match=r"records.jsonl:3: status 'great' is not one of"):
        rundir.load(out)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.text(max_size=12),
        st.one_of(st.none(), st.integers(), st.text(max_size=8), st.floats(allow_nan=False), st.booleans()),
        max_size=8,
    )
)
def test_fuzzed_records_are_refused_by_field_never_a_traceback(doc: dict) -> None:
    try:
        record = from_json(doc, "f:1")
    except RecordError as exc:
        assert str(exc).startswith("f:1: ")
    else:
        assert from_json(record.to_json(), "f:1") == record


def test_accept_refuses_a_failing_run_and_switches_current(tmp_path: Path) -> None:
    good = run_records()
    first = rundir.write(tmp_path / "runs" / "a", summary_of(good, "a"), good, {})
    bad = [*good, Record("b", "health start", "ecc", "gpu1", "fail", "uncorrectable")]
    second = rundir.write(tmp_path / "runs" / "b", summary_of(bad, "b"), bad, {})
    base = tmp_path / "baseline"
    assert rundir.current(base) is None
    assert rundir.accept(first, base, force=False) == "a"
    with pytest.raises(UserError, match="the run failed"):
        rundir.accept(second, base, force=False)
    assert rundir.current(base) == base / "a"
    assert rundir.accept(second, base, force=True) == "b" and rundir.current(base) == base / "b"


def test_svg_plot_is_well_formed_with_labelled_axes_and_values() -> None:
    svg = report.line_plot(
        "gpu1/tiny: time to first token",
        "concurrent streams",
        "TTFT (ms)",
        {"p50": [(1, 100.0), (4, 150.0)], "p99": [(1, 180.0), (4, 420.0)]},
        500.0,
        "SLO p99 500 ms",
    )
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert "concurrent streams" in texts and "TTFT (ms)" in texts and "SLO p99 500 ms" in texts
    points = {(c.get("data-x"), c.get("data-y")) for c in root.iter(f"{ns}circle")}
    assert points == {("1", "100"), ("4", "150"), ("1", "180"), ("4", "420")}
    assert len(list(root.iter(f"{ns}polyline"))) == 2 and len(list(root.iter(f"{ns}line"))) == 3
    # Higher values are drawn higher (smaller y), the SLO line above the p99 point it bounds.
    ys = {(c.get("data-x"), c.get("data-y")): float(c.get("cy", 0)) for c in root.iter(f"{ns}circle")}
    assert ys[("4", "420")] < ys[("4", "150")] < ys[("1", "100")]


def test_report_puts_failures_first_and_fetches_nothing() -> None:
    records = [
        *run_records(),
        Record(
            "r", "health start", "xid", "gpu1", "fail", "Xid 79", "drain the node", gpu_serial="1650924060002"
        ),
    ]
    page = report.render(summary_of(records), records)
    assert 'class="verdict fail"' in page and page.index("Failures and warnings") < page.index(
        "Hosts by stage"
    )
    assert "1650924060002" in page and "drain the node" in page
    for outside in ("<script", "http://", "https://", "src=", "@import", "url("):
        assert outside not in page.replace('xmlns="http://www.w3.org/2000/svg"', ""), outside


def test_accept_and_show_through_the_cli(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from sovinfra.cli import cli
    from tests.acceptance_fleet import BAD_SERIAL, fleet

    summary, records = fleet(nodes=7, gpus=8)  # node07 holds the failing GPU
    run = rundir.write(tmp_path / "run", summary, records, {})
    shown = CliRunner().invoke(cli, ["acceptance", "show", str(run)])
    assert shown.exit_code == 1 and "FAIL" in shown.output and f"node07 GPU {BAD_SERIAL}" in shown.output
    as_json = json.loads(CliRunner().invoke(cli, ["acceptance", "show", str(run), "--json"]).stdout)
    assert as_json["summary"]["verdict"] == "fail" and len(as_json["records"]) == len(records)
    base = tmp_path / "baseline"
    refused = CliRunner().invoke(cli, ["acceptance", "accept", str(run), "--baseline", str(base), "--json"])
    assert refused.exit_code == 2 and "the run failed" in json.loads(refused.stdout)["error"]
    forced = CliRunner().invoke(cli, ["acceptance", "accept", str(run), "--baseline", str(base), "--force"])
    assert forced.exit_code == 0 and (base / "current").read_text().strip() == summary["run"]
    missing_run = CliRunner().invoke(cli, ["acceptance", "show", str(tmp_path / "nope"), "-i", str(tmp_path)])
    assert missing_run.exit_code == 2 and f"{tmp_path / 'nope'}: no such run directory" in missing_run.output
    by_id = CliRunner().invoke(cli, ["acceptance", "show", "20990101T000000Z", "-i", str(tmp_path)])
    assert by_id.exit_code == 2 and "no run of that id in" in by_id.output


def test_a_node_lost_mid_run_still_gives_a_whole_run_and_report(tmp_path: Path) -> None:
    start = from_health("r", "health start", "gpu1", agent_doc())
    cut = in_budget("endpoints", 0.1, lambda: time.sleep(3) or [], "r", ["gpu1"])
    end = from_health("r", "health end", "gpu1", {"status": "unreachable", "error": "ssh: No route to host"})
    records = [*start, *cut, *end, *health_change("r", start, end)]
    out = rundir.write(tmp_path / "r", summary_of(records), records, {})
    summary, back = rundir.load(out)
    assert summary["verdict"] == "fail" and back == records
    page = (out / "report.html").read_text()
    assert "ssh: No route to host" in page and "cut at its budget of 0.1 s" in page
    # Unreachable at the end is that, not "every GPU gone".
    assert not [r for r in records if r.stage == "health change"]
