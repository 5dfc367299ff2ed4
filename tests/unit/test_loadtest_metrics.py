"""SSE parsing and metric definitions (pure)."""

from __future__ import annotations

import math

import pytest

from sovinfra.loadtest import metrics, sse
from sovinfra.loadtest.metrics import SLO, RequestRecord


def test_sse_decoder_handles_split_events_and_crlf() -> None:
    dec = sse.SSEDecoder()
    assert dec.feed(b'data: {"a"') == []
    assert dec.feed(b": 1}\n\ndata: [DONE]\r\n\r\n") == ['{"a": 1}', "[DONE]"]


def test_chunks_role_only_usage_and_errors() -> None:
    role = sse.parse_chunk('{"choices":[{"delta":{"role":"assistant"},"finish_reason":null}]}')
    assert role.text == "" and not role.done
    tok = sse.parse_chunk('{"choices":[{"delta":{"content":"hi"},"finish_reason":"length"}]}')
    assert tok.text == "hi" and tok.finish_reason == "length"
    usage = sse.parse_chunk('{"choices":[],"usage":{"completion_tokens":5}}')
    assert usage.text == "" and usage.usage == {"completion_tokens": 5}
    assert sse.parse_chunk("[DONE]").done
    assert sse.parse_chunk('{"choices":[{"text":"x","finish_reason":null}]}').text == "x"
    for bad in ("{nope", "[1]", '{"error": {"message": "overloaded"}}'):
        with pytest.raises(sse.MalformedEvent):
            sse.parse_chunk(bad)


def test_percentiles_interpolate_like_numpy() -> None:
    assert metrics.percentile([1, 2, 3, 4], 50) == 2.5
    assert metrics.percentile([10], 99) == 10
    assert math.isnan(metrics.percentile([], 50))


def test_tpot_uses_server_usage_and_goodput_counts_every_slo() -> None:
    r = RequestRecord(start=0, ok=True, ttft=0.1, e2e=1.1, chunks_with_tokens=10, output_tokens=11)
    assert r.tpot == pytest.approx(0.1)  # (1.1 - 0.1) / (11 - 1)
    assert SLO(ttft_ms=150, tpot_ms=120).met(r)
    assert not SLO(ttft_ms=50).met(r)
    assert not SLO(e2e_ms=1000).met(r)
    failed = RequestRecord(start=0, ok=False, error="http_500")
    summary = metrics.summarize(
        [r, failed, RequestRecord(start=0, warmup=True, ok=True)], 2.0, SLO(ttft_ms=150)
    )
    assert summary["requests"] == 2 and summary["requests_ok"] == 1
    assert summary["errors"] == {"http_500": 1}
    assert summary["usage_mismatches"] == 1  # 11 by usage vs 10 token chunks
    assert summary["output_tokens_per_s"] == 5.5 and summary["goodput_requests"] == 1


def test_baseline_comparison() -> None:
    base = {"ttft_ms": {"p50": 100.0}, "itl_ms": {"p50": 10.0}, "output_tokens_per_s": 1000.0}
    now = {"ttft_ms": {"p50": 130.0}, "itl_ms": {"p50": 10.5}, "output_tokens_per_s": 950.0}
    result = metrics.compare(now, base, 10.0)
    assert result["regression_pct"] == {"ttft_ms.p50": 30.0, "itl_ms.p50": 5.0, "output_tokens_per_s": 5.0}
    assert result["failed"] == ["ttft_ms.p50"]


def test_chunked_decoder_any_split() -> None:
    body = b"5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\n\r\n"
    for cut in range(1, len(body)):
        dec = sse.ChunkedDecoder()
        got = dec.feed(body[:cut]) + dec.feed(body[cut:])
        assert got == b"hello world!" and dec.done, cut
    with pytest.raises(sse.MalformedEvent):
        sse.ChunkedDecoder().feed(b"zz\r\n")
