"""Load-test clients side by side against one stub server (load-test issue).

The stub (tests/openai_stub.py, its own process) streams 32 tokens per request, TTFT 40 ms, ITL 8 ms.
At concurrency 32 and 256 this runs, in one go: `sovinfra loadtest`, AIPerf, GuideLLM and a bare asyncio
loop that only reads the stream (the anchor). Reported: TTFT p50 error against the configured 40 ms, ITL
p50 and sustained output tokens/s. Targets: TTFT p50 within 1 ms of the bare loop at 32 and 5 ms at 256;
at 256 at least 3x AIPerf's tokens/s with ITL still ~8 ms.

Usage: python3 benchmarks/loadtest_clients.py [--tools-venv /tmp/benchenv] [--rounds 4]
  AIPerf and GuideLLM come from the venv given (pip install aiperf guidellm); absent tools are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TTFT_MS, ITL_MS, OUTPUT_TOKENS, INPUT_TOKENS = 40.0, 8.0, 32, 64

BARE_LOOP = r"""
import asyncio, json, sys, time
host = sys.argv[1]
port, conc, total, out = (int(a) for a in sys.argv[2:6])
ttfts, tokens, left = [], [0], [total]
async def worker():
    r, w = await asyncio.open_connection(host, port)
    while left[0] > 0:
        left[0] -= 1
        body = json.dumps({"model": "m", "max_tokens": out, "stream": True,
                           "messages": [{"role": "user", "content": "hi " * 64}]}).encode()
        start = time.perf_counter()
        w.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body)
        await w.drain()
        first = None
        while True:
            line = await r.readline()
            if b'"content"' in line:
                tokens[0] += 1
                if first is None:
                    first = time.perf_counter() - start
                    ttfts.append(first)
            if line.startswith(b"0\r\n"):
                await r.readline()
                break
    w.close()
async def main():
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    wall = time.perf_counter() - t0
    ttfts.sort()
    p50 = ttfts[len(ttfts) // 2] * 1000
    print(json.dumps({"ttft_p50_ms": p50, "tok_s": tokens[0] / wall, "itl_p50_ms": None}))
asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_json(cmd: list[str], timeout: float = 900) -> dict:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    try:
        return json.loads(out.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"{cmd[0]}: exit {out.returncode}: {out.stderr[-800:]}") from None


def ours(url: str, conc: int, n: int) -> dict:
    doc = run_json(
        [
            sys.executable,
            "-m",
            "sovinfra",
            "loadtest",
            url,
            "--model",
            "m",
            "--concurrency",
            str(conc),
            "--requests",
            str(n),
            "--output-tokens",
            str(OUTPUT_TOKENS),
            "--input-tokens",
            str(INPUT_TOKENS),
            "--json",
        ]
    )
    return {
        "ttft_p50_ms": doc["ttft_ms"]["p50"],
        "itl_p50_ms": doc["itl_ms"]["p50"],
        "tok_s": doc["output_tokens_per_s"],
        "valid": doc["valid"],
    }


def bare(port: int, conc: int, n: int) -> dict:
    return run_json(
        [sys.executable, "-c", BARE_LOOP, "127.0.0.1", str(port), str(conc), str(n), str(OUTPUT_TOKENS)]
    )


def aiperf(venv: Path, url: str, conc: int, n: int, tok: Path) -> dict:
    with tempfile.TemporaryDirectory() as art:
        subprocess.run(
            [
                str(venv / "bin" / "aiperf"),
                "profile",
                "--model",
                "m",
                "--url",
                url,
                "--endpoint-type",
                "chat",
                "--streaming",
                "--concurrency",
                str(conc),
                "--request-count",
                str(n),
                "--isl",
                str(INPUT_TOKENS),
                "--osl",
                str(OUTPUT_TOKENS),
                "--tokenizer",
                str(tok),
                "--use-legacy-max-tokens",
                "--use-server-token-count",
                "--artifact-dir",
                art,
                "--ui",
                "none",
            ],
            capture_output=True,
            timeout=900,
            check=True,
        )
        d = json.loads((Path(art) / "profile_export_aiperf.json").read_text())
    return {
        "ttft_p50_ms": d["time_to_first_token"]["p50"],
        "itl_p50_ms": d["inter_token_latency"]["p50"],
        "tok_s": d["output_token_throughput"]["avg"],
    }


def guidellm(venv: Path, url: str, conc: int, n: int, tok: Path) -> dict:
    with tempfile.TemporaryDirectory() as art:
        out = Path(art) / "g.json"
        subprocess.run(
            [
                str(venv / "bin" / "guidellm"),
                "run",
                "--backend",
                f"kind=openai_http,target={url},model=m",
                "--profile",
                f"kind=concurrent,streams={conc}",
                "--constraint",
                f"kind=max_requests,count={n}",
                "--data",
                f"kind=synthetic_text,prompt_tokens={INPUT_TOKENS},output_tokens={OUTPUT_TOKENS}",
                "--tokenizer",
                f"kind=hf_auto,model={tok}",
                "--output",
                f"kind=json,path={out}",
                "--disable-console",
            ],
            capture_output=True,
            timeout=900,
            check=True,
            cwd=art,
        )
        m = json.loads(out.read_text())["benchmarks"][0]["metrics"]
    return {
        "ttft_p50_ms": m["time_to_first_token_ms"]["successful"]["percentiles"]["p50"],
        "itl_p50_ms": m["inter_token_latency_ms"]["successful"]["median"],
        "tok_s": m["output_tokens_per_second"]["successful"]["mean"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tools-venv", type=Path, default=Path("/tmp/benchenv"))
    parser.add_argument("--rounds", type=int, default=4, help="requests per stream")
    parser.add_argument("--concurrency", default="32,256")
    args = parser.parse_args()
    from tests.tiny_model import make_tiny_model

    tok = make_tiny_model(Path(tempfile.mkdtemp()) / "tok")
    port = free_port()
    stub = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tests" / "openai_stub.py"),
            "--port",
            str(port),
            "--ttft",
            str(TTFT_MS / 1000),
            "--itl",
            str(ITL_MS / 1000),
        ]
    )
    time.sleep(1.0)
    url = f"http://127.0.0.1:{port}"
    tools = {
        "bare asyncio loop": lambda c, n: bare(port, c, n),
        "sovinfra loadtest": lambda c, n: ours(url, c, n),
    }
    venv = args.tools_venv
    if (venv / "bin" / "aiperf").exists():
        tools["AIPerf"] = lambda c, n: aiperf(venv, url, c, n, tok)
    if (venv / "bin" / "guidellm").exists():
        tools["GuideLLM"] = lambda c, n: guidellm(venv, url, c, n, tok)
    results: dict[int, dict[str, dict]] = {}
    try:
        for conc in (int(c) for c in args.concurrency.split(",")):
            n = conc * args.rounds
            for name, fn in tools.items():
                try:
                    results.setdefault(conc, {})[name] = fn(conc, n)
                except (RuntimeError, subprocess.SubprocessError) as exc:
                    results.setdefault(conc, {})[name] = {"error": str(exc)[-300:]}
    finally:
        os.kill(stub.pid, signal.SIGTERM)
        stub.wait()
    print(
        f"stub: TTFT {TTFT_MS:g} ms, ITL {ITL_MS:g} ms, {OUTPUT_TOKENS} output tokens;",
        f"{args.rounds} rounds/stream",
    )
    print(f"{'conc':>5} {'client':<18} {'TTFT p50 err':>13} {'vs bare':>9} {'ITL p50':>8} {'tok/s':>9}")
    for conc, row in results.items():
        anchor = row["bare asyncio loop"]
        for name, r in row.items():
            if "error" in r:
                print(f"{conc:>5} {name:<18} error: {r['error']}")
                continue
            err = r["ttft_p50_ms"] - TTFT_MS
            vs = r["ttft_p50_ms"] - anchor["ttft_p50_ms"] if "error" not in anchor else float("nan")
            itl = f"{r['itl_p50_ms']:.2f}" if r.get("itl_p50_ms") is not None else "-"
            print(f"{conc:>5} {name:<18} {err:>+11.2f}ms {vs:>+7.2f}ms {itl:>8} {r['tok_s']:>9.0f}")
        ours_r, aip = row.get("sovinfra loadtest", {}), row.get("AIPerf", {})
        if "tok_s" in ours_r and "tok_s" in aip:
            print(f"{conc:>5} sovinfra/AIPerf throughput ratio: {ours_r['tok_s'] / aip['tok_s']:.2f}x")
    print(json.dumps({str(k): v for k, v in results.items()}))


if __name__ == "__main__":
    main()
