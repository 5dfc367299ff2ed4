"""One HTTP call as a client of an OpenAI-compatible endpoint would make it, for the lab tests."""

from __future__ import annotations

import json
import urllib.error
import urllib.request


def call(url: str, key: str | None, body: dict | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    """(status, body); a JSON body is POSTed; status 0 when refused or timed out (down)."""
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:  # refused or timed out: down
        return 0, b""
