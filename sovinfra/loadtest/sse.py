"""Server-sent events of OpenAI-compatible streams, parsed incrementally (pure)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class MalformedEvent(ValueError):
    """A data line that is not JSON (and not [DONE])."""


@dataclass(frozen=True)
class Chunk:
    text: str  # the token text this chunk carries ("" for role-only or usage-only chunks)
    finish_reason: str | None
    usage: dict[str, Any] | None
    done: bool = False


class SSEDecoder:
    """Feed bytes as they arrive; get the complete events' data payloads."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[str]:
        self._buffer += data
        payloads: list[str] = []
        while True:
            for sep in (b"\n\n", b"\r\n\r\n"):
                idx = self._buffer.find(sep)
                if idx != -1:
                    break
            else:
                return payloads
            event, self._buffer = self._buffer[:idx], self._buffer[idx + len(sep) :]
            lines = [
                ln[5:].lstrip()
                for ln in event.decode("utf-8", "replace").splitlines()
                if ln.startswith("data:")
            ]
            if lines:
                payloads.append("\n".join(lines))


def parse_chunk(payload: str) -> Chunk:
    """One data payload -> the token text it carries (chat delta content or completion text)."""
    if payload.strip() == "[DONE]":
        return Chunk("", None, None, done=True)
    try:
        doc = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise MalformedEvent(payload[:200]) from exc
    if not isinstance(doc, dict):
        raise MalformedEvent(payload[:200])
    if "error" in doc:
        raise MalformedEvent(f"error event: {str(doc['error'])[:200]}")
    text, finish = "", None
    for choice in doc.get("choices") or []:
        delta = choice.get("delta") or {}
        text += str(delta.get("content") or "") + str(choice.get("text") or "")
        finish = choice.get("finish_reason") or finish
    usage = doc.get("usage") if isinstance(doc.get("usage"), dict) else None
    return Chunk(text, finish, usage)


class ChunkedDecoder:
    """HTTP/1.1 chunked transfer coding, fed whatever one socket read returned (one await per read)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._need = -1  # bytes left of the current chunk's data (+2 for its CRLF); -1: expect a size line
        self.done = False

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        out = []
        while not self.done:
            if self._need < 0:
                end = self._buffer.find(b"\r\n")
                if end == -1:
                    break
                try:
                    size = int(self._buffer[:end].split(b";")[0].strip() or b"0", 16)
                except ValueError as exc:
                    raise MalformedEvent(f"bad chunk size line {self._buffer[:end][:40]!r}") from exc
                self._buffer = self._buffer[end + 2 :]
                if size == 0:
                    self.done = True  # trailers (normally none) end with an empty line; nothing follows
                    break
                self._need = size + 2
            if len(self._buffer) < self._need:
                break
            out.append(self._buffer[: self._need - 2])
            self._buffer, self._need = self._buffer[self._need :], -1
        return b"".join(out)
