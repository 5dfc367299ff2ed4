"""A small OpenAI-compatible streaming server for tests: configurable TTFT, ITL and injected faults.

Runs in a thread with its own event loop, on 127.0.0.1. Faults are decided by request number:
  fail_every=N      every Nth request answers 500
  cut_every=N       every Nth request's stream stops after half its tokens (no [DONE])
  malformed_every=N every Nth request sends a non-JSON data line
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass


@dataclass
class StubConfig:
    ttft_s: float = 0.02
    itl_s: float = 0.005
    role_chunk: bool = True  # a role-only first chunk, as vLLM sends: it must not start TTFT
    usage: bool = True
    usage_offset: int = 0  # report this many tokens more than streamed (usage mismatch)
    fail_every: int = 0
    cut_every: int = 0
    malformed_every: int = 0
    api_key: str | None = None


class OpenAIStub:
    def __init__(self, config: StubConfig) -> None:
        self.config = config
        self.count = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    def __enter__(self) -> OpenAIStub:
        self.thread.start()
        self.ready.wait(5)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()
        server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    return
                headers = {}
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    k, _, v = line.decode().partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = json.loads(await reader.readexactly(int(headers.get("content-length", "0"))))
                self.count += 1
                if not await self._respond(self.count, headers, body, writer):
                    return
        except (ConnectionResetError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _respond(
        self, n: int, headers: dict[str, str], body: dict, writer: asyncio.StreamWriter
    ) -> bool:
        c = self.config
        if c.api_key and headers.get("authorization") != f"Bearer {c.api_key}":
            return await self._plain(writer, 401, b'{"error":"bad key"}')
        if c.fail_every and n % c.fail_every == 0:
            return await self._plain(writer, 500, b'{"error":"injected"}')
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chat = "messages" in body
        tokens = int(body.get("max_tokens", 16))

        async def send(payload: str) -> None:
            data = f"data: {payload}\n\n".encode()
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            await writer.drain()

        def chunk(text: str | None, finish: str | None = None, role: bool = False) -> str:
            if chat:
                delta = {"role": "assistant"} if role else {"content": text}
                choice = {"index": 0, "delta": delta, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": text or "", "finish_reason": finish}
            return json.dumps({"id": f"cmpl-{n}", "object": "chunk", "choices": [choice]})

        if c.role_chunk and chat:
            await send(chunk(None, role=True))
        await asyncio.sleep(c.ttft_s)
        for i in range(tokens):
            if i:
                await asyncio.sleep(c.itl_s)
            if c.cut_every and n % c.cut_every == 0 and i == tokens // 2:
                return False  # drop the connection mid-stream
            if c.malformed_every and n % c.malformed_every == 0 and i == 1:
                await send("{not json")
            await send(chunk(f" tok{i}", "length" if i == tokens - 1 else None))
        if c.usage and (body.get("stream_options") or {}).get("include_usage"):
            usage = {
                "prompt_tokens": 8,
                "completion_tokens": tokens + c.usage_offset,
                "total_tokens": tokens + 8,
            }
            await send(json.dumps({"id": f"cmpl-{n}", "choices": [], "usage": usage}))
        await send("[DONE]")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async def _plain(self, writer: asyncio.StreamWriter, status: int, body: bytes) -> bool:
        head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        writer.write(head.encode() + body)
        await writer.drain()
        return True
