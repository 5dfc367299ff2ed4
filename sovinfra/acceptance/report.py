"""report.html: one self-contained page (no script, no fetch, inline SVG) a person reads or prints (pure)."""

from __future__ import annotations

import html
from collections import defaultdict
from typing import Any

from sovinfra.acceptance import bandwidth, dcgm
from sovinfra.acceptance.records import FAILING, RANK, Record, verdict

_CSS = """
body{font-family:sans-serif;margin:1.5em;color:#222;max-width:75em}
h1{margin-bottom:.2em} .meta{color:#555}
.verdict{font-size:1.6em;font-weight:bold;padding:.3em .6em;display:inline-block;border-radius:.2em}
.pass{background:#d7f2d7} .warn{background:#fff1c2} .fail,.error,.not-run{background:#f8d0d0}
.skipped{background:#eee}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.9em}
.wide{overflow-x:auto}
td,th{border:1px solid #bbb;padding:.2em .5em;text-align:left}
th{background:#f3f3f3} svg{margin:.4em 1em .8em 0;background:#fff}
@media print{body{margin:0}.verdict{border:1px solid #000}}
"""


# Stages whose records are about single GPUs: the per-host GPU table's columns come from them.
GPU_STAGES = ("health start", dcgm.STAGE, bandwidth.STAGE, "health end")


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _cell(status: str) -> str:
    return f'<td class="{_e(status)}">{_e(status)}</td>'


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    step = (hi - lo) / (n - 1) if hi > lo else 1.0
    return [lo + i * step for i in range(n)]


def line_plot(
    title: str,
    x_label: str,
    y_label: str,
    series: dict[str, list[tuple[float, float]]],
    limit: float | None = None,
    limit_label: str = "",
) -> str:
    """An SVG line plot: axes with ticks and labels, one polyline and labelled points per series."""
    width, height, left, right, top, bottom = 520, 300, 70, 20, 30, 50
    xs = [x for pts in series.values() for x, _ in pts] or [0.0]
    ys = [y for pts in series.values() for _, y in pts] + ([limit] if limit is not None else []) or [0.0]
    x_lo, x_hi = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y_lo, y_hi = 0.0, max(ys) * 1.1 if max(ys) > 0 else 1.0

    def px(x: float) -> float:
        return left + (x - x_lo) / (x_hi - x_lo) * (width - left - right)

    def py(y: float) -> float:
        return height - bottom - (y - y_lo) / (y_hi - y_lo) * (height - top - bottom)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{_e(title)}">',
        f'<text x="{width / 2}" y="18" text-anchor="middle" font-weight="bold">{_e(title)}</text>',
        f'<line class="axis" x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" '
        'stroke="#000"/>',
        f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#000"/>',
        f'<text class="x-label" x="{(left + width - right) / 2}" y="{height - 10}" text-anchor="middle">'
        f"{_e(x_label)}</text>",
        f'<text class="y-label" x="15" y="{(top + height - bottom) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 15 {(top + height - bottom) / 2})">{_e(y_label)}</text>',
    ]
    # The measured x values themselves when there are few (concurrency points), else even ticks.
    for x in sorted(set(xs)) if len(set(xs)) <= 8 else _ticks(x_lo, x_hi):
        parts.append(
            f'<text x="{px(x):.1f}" y="{height - bottom + 16}" text-anchor="middle" '
            f'font-size="11">{x:g}</text>'
        )
    for y in _ticks(y_lo, y_hi):
        parts.append(
            f'<text x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end" font-size="11">{y:.3g}</text>'
        )
    if limit is not None:
        parts.append(
            f'<line class="limit" x1="{left}" y1="{py(limit):.1f}" x2="{width - right}" '
            f'y2="{py(limit):.1f}" stroke="#c00" stroke-dasharray="6 4"/>'
            f'<text x="{width - right}" y="{py(limit) - 4:.1f}" text-anchor="end" fill="#c00" '
            f'font-size="11">{_e(limit_label)}</text>'
        )
    colours = ("#1f5fa8", "#d9731a", "#2a8c3a", "#8a3ab0", "#555")
    for i, (name, pts) in enumerate(sorted(series.items())):
        colour = colours[i % len(colours)]
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in sorted(pts))
        parts.append(
            f'<polyline class="series" data-series="{_e(name)}" points="{points}" fill="none" '
            f'stroke="{colour}" stroke-width="2"/>'
        )
        for x, y in sorted(pts):
            parts.append(
                f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}" '
                f'data-x="{x:g}" data-y="{y:g}"><title>{_e(name)}: {x:g}, {y:g}</title></circle>'
            )
        parts.append(
            f'<text x="{left + 8}" y="{top + 14 + 14 * i}" fill="{colour}" font-size="12">{_e(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _endpoint_plots(records: list[Record]) -> list[str]:
    """Per endpoint: TTFT p50/p99 vs concurrency with the SLO line; the ITL distribution (p50/p90/p99) vs
    concurrency; tokens/s vs TTFT p99 across the sweep."""
    by_endpoint: dict[tuple[str, str], dict[int, dict[str, Record]]] = defaultdict(dict)
    for r in records:
        if r.stage != "endpoints" or "@c" not in r.endpoint:
            continue
        service, _, conc = r.endpoint.rpartition("@c")
        by_endpoint[(r.host, service)].setdefault(int(conc), {})[r.check] = r
    plots = []
    for (host, service), points in sorted(by_endpoint.items()):

        def series(check: str, pts: dict[int, dict[str, Record]] = points) -> list[tuple[float, float]]:
            return [
                (float(c), float(v))
                for c, m in pts.items()
                if check in m and isinstance(v := m[check].value, int | float)
            ]

        slo = next((m["ttft p99"].threshold for m in points.values() if "ttft p99" in m), None)
        plots.append(
            line_plot(
                f"{host}/{service}: time to first token",
                "concurrent streams",
                "TTFT (ms)",
                {"p50": series("ttft p50"), "p99": series("ttft p99")},
                slo,
                f"SLO p99 {slo:g} ms" if slo is not None else "",
            )
        )
        itl = {f"p{p}": series(f"itl p{p}") for p in (50, 90, 99)}
        if any(itl.values()):
            plots.append(
                line_plot(
                    f"{host}/{service}: inter-token latency",
                    "concurrent streams",
                    "ITL (ms)",
                    {k: v for k, v in itl.items() if v},
                )
            )
        tradeoff = [
            (float(latency), float(tps))
            for m in points.values()
            if "ttft p99" in m
            and "tokens/s" in m
            and isinstance(latency := m["ttft p99"].value, int | float)
            and isinstance(tps := m["tokens/s"].value, int | float)
        ]
        plots.append(
            line_plot(
                f"{host}/{service}: throughput vs latency",
                "TTFT p99 (ms)",
                "output tokens/s",
                {"sweep": tradeoff},
            )
        )
    return plots


def render(summary: dict[str, Any], records: list[Record]) -> str:
    """The page: verdict, failures first with their action, host x stage matrix, GPUs, baseline, plots."""
    fleet = summary["verdict"]
    bad = [r for r in records if r.status in FAILING]
    warn = [r for r in records if r.status == "warn"]
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # Nothing may be fetched: the site is air-gapped and the page must stand alone.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">",
        f"<title>sovinfra acceptance {_e(summary['run'])}: {_e(fleet)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Acceptance run {_e(summary['run'])}</h1>",
        f'<p class="meta">inventory {_e(summary.get("inventory"))} · profile {_e(summary.get("profile"))} · '
        f"started {_e(summary.get('started'))} · {_e(summary.get('seconds'))} s · "
        f"baseline {_e(summary.get('baseline') or 'none')}</p>",
        f'<p>Fleet verdict: <span id="verdict" class="verdict {_e(fleet)}">{_e(fleet.upper())}</span> '
        f"{len(bad)} failing, {len(warn)} warning, {len(records)} results</p>",
    ]
    if bad or warn:
        out.append(
            "<h2>Failures and warnings</h2><table><tr><th>status</th><th>stage</th><th>subject</th>"
            "<th>check</th><th>what</th><th>action</th></tr>"
        )
        for r in bad + warn:
            out.append(
                f"<tr>{_cell(r.status)}<td>{_e(r.stage)}</td><td>{_e(r.subject)}</td><td>{_e(r.check)}</td>"
                f"<td>{_e(r.message)}</td><td>{_e(r.action)}</td></tr>"
            )
        out.append("</table>")
    stages = list(dict.fromkeys(r.stage for r in records))
    hosts = sorted({r.host for r in records})
    out.append(
        "<h2>Hosts by stage</h2><table><tr><th>host</th>"
        + "".join(f"<th>{_e(s)}</th>" for s in stages)
        + "</tr>"
    )
    for host in hosts:
        cells = []
        for stage in stages:
            these = [r for r in records if r.host == host and r.stage == stage]
            cells.append(_cell(verdict(these)) if these else "<td>-</td>")
        out.append(f"<tr><td>{_e(host)}</td>{''.join(cells)}</tr>")
    out.append("</table>")
    for host in hosts:
        gpus: dict[str, dict[str, str]] = defaultdict(dict)
        ids: dict[str, tuple[str, str]] = {}
        for r in records:
            if r.host == host and (r.gpu_serial or r.gpu_uuid) and r.stage in GPU_STAGES:
                ident = r.gpu_serial or r.gpu_uuid
                ids[ident] = (r.gpu_uuid, r.bus_id)
                was = gpus[ident].get(r.check, "pass")
                gpus[ident][r.check] = max(was, r.status, key=RANK.__getitem__)
        if not gpus:
            continue
        checks = sorted({c for g in gpus.values() for c in g})
        out.append(
            f'<h2>{_e(host)}: GPUs</h2><div class="wide"><table>'
            "<tr><th>serial</th><th>UUID</th><th>bus id</th>"
            + "".join(f"<th>{_e(c)}</th>" for c in checks)
            + "</tr>"
        )
        for ident, by_check in sorted(gpus.items()):
            uuid, bus = ids[ident]
            out.append(
                f'<tr class="gpu" data-serial="{_e(ident)}"><td>{_e(ident)}</td><td>{_e(uuid)}</td>'
                f"<td>{_e(bus)}</td>"
                + "".join(_cell(by_check[c]) if c in by_check else "<td>-</td>" for c in checks)
                + "</tr>"
            )
        out.append("</table></div>")
    compared = [r for r in records if r.stage == "baseline"]
    out.append("<h2>Since the baseline</h2>")
    if not summary.get("baseline"):
        out.append(
            "<p>No baseline: accept a run (<code>sovinfra acceptance accept RUN</code>) to compare with.</p>"
        )
    else:
        out.append("<table><tr><th>status</th><th>subject</th><th>check</th><th>change</th></tr>")
        for r in sorted(compared, key=lambda r: (r.status not in FAILING, r.status != "warn", r.subject)):
            out.append(
                f"<tr>{_cell(r.status)}<td>{_e(r.subject)}</td><td>{_e(r.check)}</td>"
                f"<td>{_e(r.message)}</td></tr>"
            )
        out.append("</table>")
    plots = _endpoint_plots(records)
    if plots:
        out.append("<h2>Endpoints</h2>" + "".join(plots))
    out.append("</body></html>\n")
    return "\n".join(out)
