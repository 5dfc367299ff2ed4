"""Load shapes (fixed concurrency, Poisson rate), bounds, warm-up, and the client's self-check."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

from sovinfra.loadtest import metrics
from sovinfra.loadtest.client import Connection, Endpoint, request_body, stream_request
from sovinfra.loadtest.metrics import SLO, RequestRecord

WORDS = (
    "the", "site", "serves", "open", "models", "on", "owned", "hardware", "from", "its", "own", "mirror",
    "and", "proves", "every", "node", "before", "a", "single", "user", "request", "arrives",
)  # fmt: skip


@dataclass
class LoadSpec:
    model: str
    concurrency: int | None = None
    rate: float | None = None  # requests/s, Poisson arrivals
    requests: int | None = None
    duration_s: float | None = None
    warmup: int = 0
    input_tokens: int = 64
    output_tokens: int = 64
    chat: bool = True
    ignore_eos: bool = True
    timeout_s: float = 120.0
    seed: int = 0
    prompts: list[str] = field(default_factory=list)  # from a dataset; else synthetic


@dataclass
class SelfCheck:
    loop_lag_ms_p99: float = 0.0
    dispatch_late_ms_p99: float = 0.0
    achieved_rate: float | None = None
    target_rate: float | None = None
    reasons: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.reasons


# Beyond these the numbers describe the client, not the server.
MAX_LOOP_LAG_MS = 20.0
MAX_DISPATCH_LATE_MS = 20.0
MIN_RATE_FRACTION = 0.9


def synthetic_prompt(i: int, tokens: int) -> str:
    """About `tokens` words: a unique head so no two prompts share a cached prefix."""
    return " ".join([f"request-{i}"] + [WORDS[(i + k) % len(WORDS)] for k in range(max(1, tokens - 1))])


def judge(
    lags: list[float],
    late: list[float],
    spec: LoadSpec,
    sent: int,
    sent_span_s: float,
    scheduled_span_s: float,
) -> SelfCheck:
    """Whether the numbers describe the server: the client's loop kept time and, at a rate, sent each
    request when its schedule said. The schedule is random (Poisson): a short run's own realised rate is
    the target, not the rate asked; the server's throughput plays no part."""
    check = SelfCheck(
        loop_lag_ms_p99=round(metrics.percentile(lags, 99) * 1000, 3) if lags else 0.0,
        dispatch_late_ms_p99=round(metrics.percentile(late, 99) * 1000, 3) if late else 0.0,
    )
    if check.loop_lag_ms_p99 > MAX_LOOP_LAG_MS:
        check.reasons.append(f"event-loop lag p99 {check.loop_lag_ms_p99:.1f} ms > {MAX_LOOP_LAG_MS:.0f} ms")
    if spec.rate:
        check.target_rate = round(sent / scheduled_span_s, 3) if scheduled_span_s > 0 else spec.rate
        check.achieved_rate = round(sent / sent_span_s, 3) if sent_span_s > 0 else check.target_rate
        if check.dispatch_late_ms_p99 > MAX_DISPATCH_LATE_MS:
            check.reasons.append(f"requests left {check.dispatch_late_ms_p99:.1f} ms late (p99)")
        if check.achieved_rate < check.target_rate * MIN_RATE_FRACTION:
            check.reasons.append(
                f"sent {check.achieved_rate:.2f} req/s of the {check.target_rate:.2f} scheduled"
                f" ({spec.rate:.2f} asked)"
            )
    return check


async def _lag_monitor(lags: list[float], stop: asyncio.Event, interval: float = 0.01) -> None:
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(interval)
        lags.append(max(0.0, time.perf_counter() - start - interval))


async def run(endpoint: Endpoint, spec: LoadSpec, slo: SLO) -> tuple[list[RequestRecord], dict[str, Any]]:
    path = "/v1/chat/completions" if spec.chat else "/v1/completions"
    total = (spec.requests or 0) + spec.warmup if spec.requests else None
    deadline = time.perf_counter() + spec.duration_s if spec.duration_s else None
    records: list[RequestRecord] = []
    counter = {"next": 0}
    lags: list[float] = []
    late: list[float] = []
    stop = asyncio.Event()

    def take() -> int | None:
        i = counter["next"]
        if (total is not None and i >= total) or (deadline is not None and time.perf_counter() >= deadline):
            return None
        counter["next"] += 1
        return i

    def body(i: int) -> dict[str, Any]:
        prompt = (
            spec.prompts[i % len(spec.prompts)] if spec.prompts else synthetic_prompt(i, spec.input_tokens)
        )
        return request_body(spec.model, prompt, spec.output_tokens, spec.chat, spec.ignore_eos)

    async def one(conn: Connection, i: int, scheduled: float | None) -> None:
        record = RequestRecord(start=time.perf_counter(), scheduled=scheduled, warmup=i < spec.warmup)
        records.append(record)
        await stream_request(conn, path, body(i), record, spec.timeout_s)

    async def fire(i: int, at: float) -> None:
        """Rate mode: each arrival on its own connection, as independent clients would."""
        conn = Connection(endpoint)
        try:
            await one(conn, i, at)
        finally:
            conn.close()

    monitor = asyncio.create_task(_lag_monitor(lags, stop))
    start = time.perf_counter()
    spans = (0.0, 0.0)  # rate mode: when the last request left, and when its schedule said
    if spec.rate:
        rng = random.Random(spec.seed)
        tasks = []
        next_at = start
        while (i := take()) is not None:
            next_at += rng.expovariate(spec.rate)
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent_at = time.perf_counter()
            late.append(max(0.0, sent_at - next_at))
            tasks.append(asyncio.create_task(fire(i, next_at)))
            spans = (sent_at - start, next_at - start)
        await asyncio.gather(*tasks)
    else:

        async def worker() -> None:
            conn = Connection(endpoint)
            while (i := take()) is not None:
                await one(conn, i, None)
            conn.close()

        await asyncio.gather(*(worker() for _ in range(spec.concurrency or 1)))
    wall = time.perf_counter() - start
    stop.set()
    await monitor
    measured_wall = wall
    if spec.warmup:
        first = min((r.start for r in records if not r.warmup), default=start)
        measured_wall = time.perf_counter() - first if records else wall
    summary = metrics.summarize(records, measured_wall, slo)
    check = judge(lags, late, spec, counter["next"], *spans)
    summary.update(
        {
            "valid": check.valid,
            "invalid_reasons": check.reasons,
            "self_check": {
                "loop_lag_ms_p99": check.loop_lag_ms_p99,
                "dispatch_late_ms_p99": check.dispatch_late_ms_p99,
                "achieved_rate": check.achieved_rate,
                "target_rate": check.target_rate,
            },
            "wall_s": round(measured_wall, 3),
        }
    )
    return records, summary
