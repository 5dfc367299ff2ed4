"""The highest arrival rate that still meets the SLO: a geometric bisection over probes (pure).

Latency against rate is monotone enough for serving systems (queues only grow), so bisection between a
passing and a failing rate converges; each probe is one bounded Poisson run, supplied by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Probe:
    rate: float
    passed: bool
    reasons: list[str]
    summary: dict[str, Any]


@dataclass
class SearchResult:
    max_rate: float | None  # None: even the lowest rate missed
    probes: list[Probe] = field(default_factory=list)
    ceiling_found: bool = True  # False: the highest rate asked for still passed
    client_limited: bool = False  # a probe was invalid: the answer is bounded by the client, not the server


def max_rate(
    probe: Callable[[float], Probe], low: float, high: float, steps: int, precision: float = 0.05
) -> SearchResult:
    """Probe `high`, then `low`, then bisect geometrically; stop after `steps` probes or at `precision`."""
    if not 0 < low < high:
        raise ValueError("need 0 < low < high")
    result = SearchResult(max_rate=None)

    def run(rate: float) -> Probe:
        p = probe(rate)
        result.probes.append(p)
        if not p.summary.get("valid", True):
            result.client_limited = True
        return p

    if run(high).passed:
        result.max_rate, result.ceiling_found = high, False
        return result
    if not run(low).passed:
        return result
    good, bad = low, high
    while len(result.probes) < steps and bad / good > 1 + precision:
        mid = math.sqrt(good * bad)
        if run(mid).passed:
            good = mid
        else:
            bad = mid
    result.max_rate = round(good, 3)
    return result
