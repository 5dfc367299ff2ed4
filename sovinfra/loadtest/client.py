"""A lean asyncio HTTP/1.1 streaming client: one kept-alive connection per worker, timestamps per event.

Deliberately no HTTP library: the client must never be the bottleneck it is measuring, and every
byte-to-event step is visible here.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from sovinfra.loadtest.metrics import RequestRecord
from sovinfra.loadtest.sse import ChunkedDecoder, MalformedEvent, SSEDecoder, parse_chunk


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int
    base_path: str
    api_key: str | None = None
    connect_to: tuple[str, int] | None = None  # a local tunnel's end; host stays in Host and SNI

    @classmethod
    def parse(cls, url: str, api_key: str | None = None) -> Endpoint:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r}: expected http(s)://host[:port][/base]")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"), api_key)


def request_body(model: str, prompt: str, max_tokens: int, chat: bool, ignore_eos: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0,
    }
    if ignore_eos:
        body["ignore_eos"] = True  # vLLM and llama.cpp honour it: exact output lengths
    if chat:
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    return body


class Connection:
    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        ep = self.endpoint
        ctx = ssl.create_default_context() if ep.scheme == "https" else None
        host, port = ep.connect_to or (ep.host, ep.port)
        self.reader, self.writer = await asyncio.open_connection(
            host, port, ssl=ctx, server_hostname=ep.host if ctx else None
        )

    def close(self) -> None:
        if self.writer:
            self.writer.close()
        self.reader = self.writer = None


class _HttpError(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


async def _read_headers(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionResetError("connection closed before the response")
    status = int(status_line.split()[1])
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


async def _body_chunks(reader: asyncio.StreamReader, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    """The body's bytes as they arrive: one await per socket read, framing decoded in memory."""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunked = ChunkedDecoder()
        while not chunked.done:
            data = await reader.read(65536)
            if not data:
                raise asyncio.IncompleteReadError(b"", None)
            if payload := chunked.feed(data):
                yield payload
    elif "content-length" in headers:
        remaining = int(headers["content-length"])
        while remaining > 0:
            data = await reader.read(min(remaining, 65536))
            if not data:
                raise asyncio.IncompleteReadError(b"", remaining)
            remaining -= len(data)
            yield data
    else:
        while data := await reader.read(65536):
            yield data


async def stream_request(
    conn: Connection, path: str, body: dict[str, Any], record: RequestRecord, timeout_s: float
) -> None:
    """Send one streaming request on conn and fill record; errors are classified, never raised."""
    try:
        await asyncio.wait_for(_stream(conn, path, body, record), timeout_s)
        record.ok = record.error is None
    except TimeoutError:
        record.error = "timeout"
        conn.close()
    except _HttpError as exc:
        record.error = f"http_{exc.status}"
    except MalformedEvent:
        record.error = "malformed_sse"
        conn.close()
    except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError):
        record.error = "cut_stream"
        conn.close()
    except OSError:
        record.error = "connect"
        conn.close()
    if record.e2e is None:
        record.e2e = time.perf_counter() - record.start


async def _stream(conn: Connection, path: str, body: dict[str, Any], record: RequestRecord) -> None:
    ep = conn.endpoint
    payload = json.dumps(body).encode()
    head = (
        f"POST {ep.base_path}{path} HTTP/1.1\r\nHost: {ep.host}:{ep.port}\r\n"
        "Content-Type: application/json\r\nAccept: text/event-stream\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: keep-alive\r\n"
    )
    if ep.api_key:
        head += f"Authorization: Bearer {ep.api_key}\r\n"
    for attempt in (0, 1):  # a kept-alive connection the server closed meanwhile: reconnect once
        if conn.writer is None:
            await conn.open()
        assert conn.reader is not None and conn.writer is not None
        record.start = time.perf_counter()
        try:
            conn.writer.write(head.encode() + b"\r\n" + payload)
            await conn.writer.drain()
            status, headers = await _read_headers(conn.reader)
            reader = conn.reader
            break
        except (ConnectionResetError, BrokenPipeError):
            conn.close()
            if attempt:
                raise
    if status != 200:
        async for _ in _body_chunks(reader, headers):
            pass
        raise _HttpError(status)
    decoder = SSEDecoder()
    last_token_at: float | None = None
    finished = False
    async for data in _body_chunks(reader, headers):
        now = time.perf_counter()
        for event in decoder.feed(data):
            chunk = parse_chunk(event)
            if chunk.done:
                finished = True
                continue
            if chunk.usage:
                record.output_tokens = chunk.usage.get("completion_tokens", record.output_tokens)
                record.prompt_tokens = chunk.usage.get("prompt_tokens", record.prompt_tokens)
            if chunk.finish_reason:
                finished = True
            if chunk.text:  # role-only and usage-only chunks carry no token: they start no clock
                if last_token_at is None:
                    record.ttft = now - record.start
                else:
                    record.itl.append(now - last_token_at)
                last_token_at = now
                record.chunks_with_tokens += 1
    record.e2e = time.perf_counter() - record.start
    if headers.get("connection", "").lower() == "close":
        conn.close()
    if not finished:
        raise asyncio.IncompleteReadError(b"", None)  # the stream ended without [DONE] or finish_reason
