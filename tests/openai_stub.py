"""A small OpenAI-compatible streaming server for tests: configurable TTFT, ITL and injected faults.

Runs in a thread with its own event loop, on 127.0.0.1. Faults are decided by request number:
  fail_every=N      every Nth request answers 500
  cut_every=N       every Nth request's stream stops after half its tokens (no [DONE])
  malformed_every=N every Nth request sends a non-JSON data line
  capacity=N        at most N requests generate at once; the rest queue (latency grows with load)

Also runs standalone (stdlib only), as on a lab host: python3 openai_stub.py --host H --port P [--peers F]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
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
    capacity: int = 0  # 0: unbounded


class OpenAIStub:
    def __init__(self, config: StubConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config
        self.host, self.port = host, port
        self.peers: set[str] = set()  # client addresses seen (a tunnel shows its far end)
        self.count = 0
        self.overshoot_s: list[float] = []  # how much later than asked each pause ended (its own lag)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> OpenAIStub:
        self.thread.start()
        self.ready.wait(5)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.slots = asyncio.Semaphore(self.config.capacity) if self.config.capacity else None
        server = self.loop.run_until_complete(asyncio.start_server(self._handle, self.host, self.port))
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()
        server.close()
        # Streams still open when the test ends are cancelled, not left to be garbage-collected mid-await.
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.peers.add(writer.get_extra_info("peername")[0])
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    return
                headers = {}
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    k, _, v = line.decode().partition(":")
                    headers[k.strip().lower()] = v.strip()
                raw = await reader.readexactly(int(headers.get("content-length", "0")))
                if request_line.startswith(b"GET "):  # /health, /v1/models: readiness probes
                    models = {"object": "list", "data": [{"id": "m", "object": "model"}]}
                    await self._plain(writer, 200, json.dumps(models).encode())
                    continue
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    await self._plain(writer, 400, b'{"error":"body is not JSON"}')
                    continue
                self.count += 1
                if self.slots:
                    async with self.slots:
                        keep = await self._respond(self.count, headers, body, writer)
                else:
                    keep = await self._respond(self.count, headers, body, writer)
                if not keep:
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
        tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 16)

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
            kind = "chat.completion.chunk" if chat else "text_completion"
            return json.dumps(
                {"id": f"cmpl-{n}", "object": kind, "created": 0, "model": "m", "choices": [choice]}
            )

        if c.role_chunk and chat:
            await send(chunk(None, role=True))
        await self._pause(c.ttft_s)
        for i in range(tokens):
            if i:
                await self._pause(c.itl_s)
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

    async def _pause(self, seconds: float) -> None:
        start = time.perf_counter()
        await asyncio.sleep(seconds)
        self.overshoot_s.append(time.perf_counter() - start - seconds)

    def overshoot_ms_p99(self) -> float:
        """The stub's own timing error: the 99th percentile of how late its pauses ended."""
        late = sorted(self.overshoot_s)
        return late[min(len(late) - 1, int(len(late) * 0.99))] * 1000 if late else 0.0

    async def _plain(self, writer: asyncio.StreamWriter, status: int, body: bytes) -> bool:
        head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        writer.write(head.encode() + body)
        await writer.drain()
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--peers", help="append each new client address to this file")
    parser.add_argument("--ttft", type=float, default=0.02)
    parser.add_argument("--itl", type=float, default=0.005)
    args = parser.parse_args()
    stub = OpenAIStub(StubConfig(ttft_s=args.ttft, itl_s=args.itl), args.host, args.port)
    with stub:
        seen: set[str] = set()
        while True:
            threading.Event().wait(0.2)
            if args.peers and stub.peers - seen:
                with open(args.peers, "a") as f:
                    for peer in sorted(stub.peers - seen):
                        f.write(peer + "\n")
                seen |= stub.peers


if __name__ == "__main__":
    main()
