"""The max-rate search and the pass/fail verdict (pure)."""

from __future__ import annotations

import pytest

from sovinfra.loadtest import metrics, search


def _probe_with_capacity(capacity: float):  # type: ignore[no-untyped-def]
    def probe(rate: float) -> search.Probe:
        ok = rate <= capacity
        return search.Probe(rate, ok, [] if ok else ["slow"], {"valid": True})

    return probe


@pytest.mark.parametrize("capacity", [3.0, 17.5, 60.0, 99.0])
def test_search_converges_below_capacity(capacity: float) -> None:
    result = search.max_rate(_probe_with_capacity(capacity), 1.0, 100.0, steps=12, precision=0.02)
    assert result.max_rate is not None and result.ceiling_found
    assert capacity / 1.03 <= result.max_rate <= capacity
    assert len(result.probes) <= 12


def test_search_edges() -> None:
    top = search.max_rate(_probe_with_capacity(500), 1, 100, steps=6)
    assert top.max_rate == 100 and not top.ceiling_found and len(top.probes) == 1
    none = search.max_rate(_probe_with_capacity(0.5), 1, 100, steps=6)
    assert none.max_rate is None and [p.rate for p in none.probes] == [100, 1]
    with pytest.raises(ValueError):
        search.max_rate(_probe_with_capacity(1), 5, 5, steps=3)


def _summary(**over: object) -> dict:
    base = {
        "requests": 10, "requests_ok": 10, "errors": {}, "valid": True, "invalid_reasons": [],
        "goodput_requests": 10, "ttft_ms": {"p99": 50.0}, "tpot_ms": {"p99": 5.0}, "e2e_ms": {"p99": 90.0},
    }  # fmt: skip
    return {**base, **over}


def test_verdict() -> None:
    slo = metrics.SLO(ttft_ms=100)
    assert metrics.verdict(_summary(), slo, 1.0, 0.0) == []
    errors = metrics.verdict(_summary(requests_ok=9, errors={"http_500": 1}), slo, 1.0, 0.0)
    assert len(errors) == 1 and "1/10 requests failed" in errors[0]
    assert metrics.verdict(_summary(requests_ok=9, goodput_requests=9), slo, 0.9, 0.1) == []
    slow = metrics.verdict(_summary(goodput_requests=7, ttft_ms={"p99": 250.0}), slo, 0.95, 0.0)
    assert slow == ["goodput 70% of requests met the SLO, needs 95% (ttft p99 250.0 ms > 100 ms)"]
    invalid = metrics.verdict(_summary(valid=False, invalid_reasons=["lag"]), metrics.SLO(), 1.0, 0.0)
    assert invalid == ["client could not keep up: lag"]
    assert metrics.verdict(_summary(requests=0), slo, 1.0, 0.0)[-1].startswith("no request")


def test_self_check_judges_the_schedule_not_the_rate_asked() -> None:
    from sovinfra.loadtest.runner import LoadSpec, judge

    spec = LoadSpec(model="m", rate=10.0, duration_s=2.0)
    # A short Poisson schedule that happened to put 15 arrivals in 1.9 s, all sent on time: valid.
    on_time = judge([0.001], [0.001] * 15, spec, 15, 1.9, 1.9)
    assert on_time.valid and on_time.target_rate == round(15 / 1.9, 3)
    # The same schedule sent over 2.5 s (the client fell behind): invalid, saying by how much.
    behind = judge([0.001], [0.001] * 15, spec, 15, 2.5, 1.9)
    assert behind.reasons == ["sent 6.00 req/s of the 7.89 scheduled (10.00 asked)"]
