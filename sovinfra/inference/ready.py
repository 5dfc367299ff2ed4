"""Readiness gate run on a node: wait until an endpoint's health check passes and it lists its model.

`python -m sovinfra.inference.ready URL MODEL [--health PATH] [--timeout S] [--probe N]`; the API key
comes from the SOVINFRA_API_KEY environment variable, never from the command line. With --probe, once
ready, N short completions one after another must each come back with tokens (a node about to take
traffic again proves it generates, not only that it lists its model). Exit 0 when ready (and probed), 1
with the reason on stderr otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any


def models_problem(status: int, body: bytes, model: str) -> str | None:
    """Why a /v1/models answer is not ready yet (None: ready)."""
    if status != 200:
        return f"/v1/models answered {status}"
    try:
        data: Any = json.loads(body)
        ids = [str(m.get("id")) for m in data.get("data", [])]
    except (ValueError, AttributeError):
        return "/v1/models did not answer an OpenAI model list"
    if model not in ids:
        return f"/v1/models lists {ids}, not {model!r}"
    return None


def completion_problem(status: int, body: bytes) -> str | None:
    """Why a /v1/completions answer is not a generated completion (None: it is)."""
    if status != 200:
        return f"/v1/completions answered {status}: {body[:200].decode(errors='replace')}"
    try:
        data: Any = json.loads(body)
        choice = data["choices"][0]
        tokens = (data.get("usage") or {}).get("completion_tokens")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return "/v1/completions did not answer an OpenAI completion"
    if tokens == 0 or (tokens is None and not choice.get("text")):
        return "/v1/completions answered without generating a token"
    return None


def _get(url: str, api_key: str, timeout: float, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait(base: str, model: str, health: str | None, api_key: str, timeout: float) -> tuple[bool, str, float]:
    start = time.monotonic()
    reason = "no answer yet"
    while True:
        try:
            problem: str | None = None
            if health:
                status, _ = _get(base + health, "", 5.0)
                problem = None if status == 200 else f"{health} answered {status}"
            if problem is None:
                problem = models_problem(*_get(base + "/v1/models", api_key, 5.0), model)
            if problem is None:
                return True, "ready", time.monotonic() - start
            reason = problem
        except (OSError, urllib.error.URLError) as exc:
            reason = f"not answering ({getattr(exc, 'reason', exc)})"
        if time.monotonic() - start >= timeout:
            return False, reason, time.monotonic() - start
        time.sleep(1.0)


def probe(base: str, model: str, api_key: str, requests: int, timeout: float) -> str | None:
    """`requests` short completions, one after another; the first problem, or None."""
    body = json.dumps({"model": model, "prompt": "Hello", "max_tokens": 4, "temperature": 0}).encode()
    for n in range(1, requests + 1):
        try:
            problem = completion_problem(*_get(base + "/v1/completions", api_key, timeout, body))
        except (OSError, urllib.error.URLError) as exc:
            problem = f"not answering ({getattr(exc, 'reason', exc)})"
        if problem:
            return f"probe {n}/{requests}: {problem}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sovinfra.inference.ready")
    parser.add_argument("url", help="base URL, e.g. http://10.0.0.5:8000")
    parser.add_argument("model", help="the served model name /v1/models must list")
    parser.add_argument("--health", help="health path that must answer 200 first (e.g. /health)")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--probe", type=int, default=0, metavar="N", help="then N short completions")
    args = parser.parse_args(argv)
    base, key = args.url.rstrip("/"), os.environ.get("SOVINFRA_API_KEY", "")
    ok, reason, waited = wait(base, args.model, args.health, key, args.timeout)
    problem = probe(base, args.model, key, args.probe, args.timeout) if ok and args.probe else None
    print(json.dumps({"ready": ok, "reason": problem or reason, "waited_s": round(waited, 1),
                      "probed": 0 if problem or not ok else args.probe}))  # fmt: skip
    if not ok:
        print(f"{args.url}: not ready after {waited:.0f} s: {reason}", file=sys.stderr)
        return 1
    if problem:
        print(f"{args.url}: ready, but {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
