"""`sovinfra loadtest`: load-test one OpenAI-compatible endpoint."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from sovinfra.errors import UserError


def _numbers(value: str | None, kind: type, flag: str) -> list[Any]:
    if value is None:
        return []
    try:
        items = [kind(v) for v in value.split(",") if v.strip()]
    except ValueError as exc:
        raise UserError(f"{flag}: {value!r} is not a comma-separated list of numbers") from exc
    if not items or any(v <= 0 for v in items):
        raise UserError(f"{flag}: values must be > 0")
    return items


def _prompts(path: Path | None) -> list[str]:
    if path is None:
        return []
    prompts = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
            prompts.append(str(doc["prompt"]) if isinstance(doc, dict) else str(doc))
        except (json.JSONDecodeError, KeyError) as exc:
            raise UserError(f'{path}: line {n}: expected a JSON object with a "prompt" key') from exc
    if not prompts:
        raise UserError(f"{path}: no prompts")
    return prompts


def _table(summary: dict[str, Any]) -> str:
    lines = [f"{'metric':<10} {'mean':>9} {'p50':>9} {'p90':>9} {'p95':>9} {'p99':>9}  (ms)"]
    for metric in ("ttft_ms", "itl_ms", "tpot_ms", "e2e_ms"):
        d = summary[metric]
        cells = " ".join(
            f"{d[k]:>9.2f}" if d[k] is not None else f"{'-':>9}" for k in ("mean", "p50", "p90", "p95", "p99")
        )
        lines.append(f"{metric[:-3]:<10} {cells}")
    lines.append(
        f"requests ok {summary['requests_ok']}/{summary['requests']}, errors {summary['errors'] or 'none'}, "
        f"{summary['output_tokens_per_s']} output tok/s, goodput {summary['goodput_per_s']} req/s"
    )
    if not summary["valid"]:
        lines.append("INVALID: " + "; ".join(summary["invalid_reasons"]) + " (the client, not the server)")
    return "\n".join(lines)


@click.command()
@click.argument("url")
@click.option("--model", required=True, help="model name the endpoint serves")
@click.option("--concurrency", help="fixed concurrency, or a comma-separated sweep (1,8,32)")
@click.option("--rate", help="Poisson arrival rate in req/s, or a comma-separated sweep")
@click.option("--requests", "n_requests", type=click.IntRange(1), help="requests per run (after warm-up)")
@click.option("--duration", type=click.FloatRange(min=0.1), help="seconds per run")
@click.option(
    "--warmup", default=0, show_default=True, type=click.IntRange(0), help="requests excluded from results"
)
@click.option("--input-tokens", default=64, show_default=True, type=click.IntRange(1), help="prompt words")
@click.option("--output-tokens", default=64, show_default=True, type=click.IntRange(1), help="max_tokens")
@click.option("--dataset", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="JSONL prompts")
@click.option("--completions", is_flag=True, help="use /v1/completions instead of /v1/chat/completions")
@click.option(
    "--api-key", envvar="SOVINFRA_LOADTEST_API_KEY", help="bearer token (or SOVINFRA_LOADTEST_API_KEY)"
)
@click.option("--slo-ttft-ms", type=float, help="time to first token each request must meet (ms)")
@click.option("--slo-tpot-ms", type=float, help="time per output token after the first (ms)")
@click.option("--slo-e2e-ms", type=float, help="end-to-end request latency (ms)")
@click.option(
    "--min-goodput",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="share of requests that must meet every SLO",
)
@click.option("--search-rate", help="LOW,HIGH: find the highest Poisson rate (req/s) that meets the SLO")
@click.option("--search-steps", default=7, show_default=True, type=click.IntRange(2), help="probes at most")
@click.option("--timeout", default=120.0, show_default=True, type=float, help="per-request timeout (s)")
@click.option("--json", "as_json", is_flag=True, help="JSON summary")
@click.option(
    "--jsonl", "jsonl_path", type=click.Path(dir_okay=False, path_type=Path), help="per-request JSONL"
)
@click.option(
    "--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), help="sweep results as CSV"
)
@click.option("--save-baseline", type=click.Path(dir_okay=False, path_type=Path), help="write a baseline")
@click.option(
    "--baseline", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="exit 1 if worse than it"
)
@click.option(
    "--max-regression-pct",
    default=10.0,
    show_default=True,
    type=float,
    help="how much worse than the baseline a figure may be (%)",
)
@click.option(
    "--max-error-rate",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="fraction of failed requests tolerated",
)
def loadtest(
    url: str,
    model: str,
    concurrency: str | None,
    rate: str | None,
    n_requests: int | None,
    duration: float | None,
    warmup: int,
    input_tokens: int,
    output_tokens: int,
    dataset: Path | None,
    completions: bool,
    api_key: str | None,
    slo_ttft_ms: float | None,
    slo_tpot_ms: float | None,
    slo_e2e_ms: float | None,
    min_goodput: float,
    search_rate: str | None,
    search_steps: int,
    timeout: float,
    as_json: bool,
    jsonl_path: Path | None,
    csv_path: Path | None,
    save_baseline: Path | None,
    baseline: Path | None,
    max_regression_pct: float,
    max_error_rate: float,
) -> None:
    """Load-test the OpenAI-compatible endpoint at URL; exit 1 on an SLO/baseline miss or an invalid run."""
    from sovinfra.loadtest import metrics, runner
    from sovinfra.loadtest.client import Endpoint

    if sum(1 for shape in (concurrency, rate, search_rate) if shape) > 1:
        raise UserError("--concurrency, --rate and --search-rate: choose one load shape")
    if not n_requests and not duration:
        raise UserError("bound the run: give --requests and/or --duration")
    try:
        endpoint = Endpoint.parse(url, api_key)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    shapes: list[tuple[str, float]] = [
        ("concurrency", c) for c in _numbers(concurrency, int, "--concurrency")
    ]
    shapes += [("rate", r) for r in _numbers(rate, float, "--rate")]
    shapes = shapes or [("concurrency", 1)]
    slo = metrics.SLO(slo_ttft_ms, slo_tpot_ms, slo_e2e_ms)
    bounds = _numbers(search_rate, float, "--search-rate")
    if search_rate and (len(bounds) != 2 or bounds[0] >= bounds[1]):
        raise UserError(f"--search-rate: {search_rate!r}: expected LOW,HIGH with LOW < HIGH")
    if search_rate and slo == metrics.SLO():
        raise UserError("--search-rate needs an SLO: --slo-ttft-ms, --slo-tpot-ms and/or --slo-e2e-ms")
    prompts = _prompts(dataset)

    def spec_for(kind: str, value: float) -> runner.LoadSpec:
        return runner.LoadSpec(
            model=model,
            requests=n_requests,
            duration_s=duration,
            warmup=warmup,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            chat=not completions,
            timeout_s=timeout,
            prompts=prompts,
            **({"concurrency": int(value)} if kind == "concurrency" else {"rate": value}),
        )

    if search_rate:
        _search(endpoint, spec_for, slo, bounds, search_steps, min_goodput, max_error_rate, as_json)
        return
    results = []
    jsonl = jsonl_path.open("w") if jsonl_path else None
    for kind, value in shapes:
        records, summary = asyncio.run(runner.run(endpoint, spec_for(kind, value), slo))
        summary = {"shape": kind, "value": value, **summary}
        results.append(summary)
        if jsonl:
            for r in records:
                jsonl.write(json.dumps({"shape": kind, "value": value, **asdict(r), "tpot": r.tpot}) + "\n")
        if not as_json:
            click.echo(f"== {kind} {value:g}")
            click.echo(_table(summary))
    if jsonl:
        jsonl.close()
    if csv_path:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(
            [
                "shape",
                "value",
                "requests_ok",
                "errors",
                "ttft_p50_ms",
                "ttft_p99_ms",
                "itl_p50_ms",
                "tpot_p50_ms",
                "e2e_p50_ms",
                "output_tokens_per_s",
                "goodput_per_s",
                "valid",
            ]
        )
        for s in results:
            writer.writerow(
                [
                    s["shape"],
                    s["value"],
                    s["requests_ok"],
                    sum(s["errors"].values()),
                    s["ttft_ms"]["p50"],
                    s["ttft_ms"]["p99"],
                    s["itl_ms"]["p50"],
                    s["tpot_ms"]["p50"],
                    s["e2e_ms"]["p50"],
                    s["output_tokens_per_s"],
                    s["goodput_per_s"],
                    s["valid"],
                ]
            )
        csv_path.write_text(buf.getvalue())
    last = results[-1]
    comparison = None
    if baseline:
        comparison = metrics.compare(last, json.loads(baseline.read_text()), max_regression_pct)
        last["baseline"] = comparison
    if save_baseline:
        save_baseline.write_text(json.dumps(last, indent=2))
    if as_json:
        click.echo(json.dumps(results[0] if len(results) == 1 else {"sweep": results}, indent=2))
    elif comparison:
        click.echo(f"vs baseline: {comparison['regression_pct']} (fail above {max_regression_pct}%)")
    missed = [r for s in results for r in metrics.verdict(s, slo, min_goodput, max_error_rate)]
    if not as_json:
        for reason in missed:
            click.echo(f"FAIL: {reason}")
    if missed or (comparison and comparison["failed"]):
        raise SystemExit(1)


def _search(
    endpoint: Any,
    spec_for: Any,
    slo: Any,
    bounds: list[float],
    steps: int,
    min_goodput: float,
    max_error_rate: float,
    as_json: bool,
) -> None:
    from sovinfra.loadtest import metrics, runner, search

    def probe(rate: float) -> search.Probe:
        _, summary = asyncio.run(runner.run(endpoint, spec_for("rate", rate), slo))
        reasons = metrics.verdict(summary, slo, min_goodput, max_error_rate)
        if not as_json:
            click.echo(f"rate {rate:8.3f} req/s: {'meets the SLO' if not reasons else '; '.join(reasons)}")
        return search.Probe(rate, not reasons, reasons, summary)

    result = search.max_rate(probe, bounds[0], bounds[1], steps)
    if as_json:
        doc = {
            "search": {
                "max_rate": result.max_rate,
                "ceiling_found": result.ceiling_found,
                "client_limited": result.client_limited,
                "probes": [{"rate": p.rate, "passed": p.passed, "reasons": p.reasons, **p.summary}
                           for p in result.probes],
            }
        }  # fmt: skip
        click.echo(json.dumps(doc, indent=2))
    elif result.max_rate is None:
        click.echo(f"no rate meets the SLO: even {bounds[0]:g} req/s missed")
    else:
        note = "" if result.ceiling_found else " (the highest rate asked for: the ceiling is above it)"
        click.echo(f"highest rate meeting the SLO: {result.max_rate:g} req/s{note}")
    if result.client_limited and not as_json:
        click.echo("note: a probe was invalid (client-bound); the ceiling may be the client's")
    if result.max_rate is None:
        raise SystemExit(1)
