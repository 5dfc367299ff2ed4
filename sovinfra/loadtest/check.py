"""One endpoint's load check against its SLOs (`verify load`, acceptance's sweep): through its jump host."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

from sovinfra.errors import UserError
from sovinfra.loadtest import metrics, runner
from sovinfra.loadtest.client import Endpoint
from sovinfra.loadtest.targets import Target
from sovinfra.loadtest.tunnel import Tunnel


def check(
    target: Target,
    log: Callable[[str], None] | None = None,
    concurrency: int | None = None,
    requests: int | None = None,
) -> dict[str, Any]:
    """Run the target's load (or `concurrency`/`requests` instead of its own) and judge it."""
    endpoint = Endpoint.parse(target.url, target.api_key)
    via = f"{target.jump.host}:{target.jump.port}" if target.jump else None
    result: dict[str, Any] = {"host": target.host, "service": target.service, "url": target.url,
                              "model": target.model, "via": via, "slo": asdict(target.slo), "summary": None,
                              "concurrency": concurrency or target.load.concurrency}  # fmt: skip
    if log:
        log(f"load-testing {target.host}/{target.service} at {target.url}" + (f" via {via}" if via else "")
            + (f", concurrency {concurrency}" if concurrency else "") + " ...")  # fmt: skip
    spec = runner.LoadSpec(
        model=target.model,
        concurrency=concurrency or target.load.concurrency,
        requests=requests or target.load.requests,
        warmup=target.load.warmup,
        input_tokens=target.load.input_tokens,
        output_tokens=target.load.output_tokens,
        timeout_s=target.load.timeout_s,
    )
    try:
        with contextlib.ExitStack() as stack:
            if target.jump:
                tunnel = stack.enter_context(Tunnel(target.jump, (endpoint.host, endpoint.port)))
                endpoint = replace(endpoint, connect_to=("127.0.0.1", tunnel.local_port))
            _, summary = asyncio.run(runner.run(endpoint, spec, target.slo))
    except UserError as exc:  # the jump host refused us: this endpoint fails, the others still run
        return {**result, "passed": False, "reasons": [str(exc)]}
    reasons = metrics.verdict(summary, target.slo, target.min_goodput, target.max_error_rate)
    return {**result, "summary": summary, "passed": not reasons, "reasons": reasons}
