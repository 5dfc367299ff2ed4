"""A TCP relay that cuts one response mid-body: a network that drops a transfer once (test harness)."""

from __future__ import annotations

import contextlib
import socket
import threading


class FlakyProxy:
    def __init__(self, upstream_port: int, cut_path: str, cut_after: int) -> None:
        self.upstream_port = upstream_port
        self.cut_path = cut_path.encode()
        self.cut_after = cut_after
        self.cuts = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        state = {"cut_armed": False}

        def up() -> None:
            try:
                while data := client.recv(65536):
                    if (
                        data.startswith(b"GET ")
                        and self.cut_path in data.split(b"\r\n", 1)[0]
                        and self.cuts == 0
                    ):
                        state["cut_armed"] = True
                    upstream.sendall(data)
            except OSError:
                pass

        threading.Thread(target=up, daemon=True).start()
        sent = 0
        try:
            while data := upstream.recv(65536):
                if state["cut_armed"] and sent + len(data) > self.cut_after:
                    client.sendall(data[: self.cut_after - sent])
                    self.cuts += 1
                    break  # drop the connection mid-body
                client.sendall(data)
                sent += len(data) if state["cut_armed"] else 0
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # wake the other relay thread: the link is gone
                sock.close()

    def close(self) -> None:
        self.sock.close()
