"""A local TCP port forwarded through an ssh jump host (paramiko direct-tcpip), host key checked.

The load-test client connects to 127.0.0.1:<port>; each connection becomes one ssh channel to the
endpoint as the jump host sees it. Threads, not asyncio: paramiko channels block, and the tunnel must not
share the client's event loop (its lag would be charged to the server).
"""

from __future__ import annotations

import select
import socket
import socketserver
import threading
from pathlib import Path
from typing import Any

from sovinfra.errors import UserError
from sovinfra.fleet.ssh_options import Jump


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    request_queue_size = 1024  # the client may open its whole concurrency at once


class Tunnel:
    def __init__(self, jump: Jump, target: tuple[str, int]) -> None:
        self.jump, self.target = jump, target
        self.client: Any = None
        self.server: _Server | None = None

    def __enter__(self) -> Tunnel:
        import paramiko

        client = paramiko.SSHClient()
        client.load_system_host_keys()
        if self.jump.known_hosts:
            client.load_host_keys(str(Path(self.jump.known_hosts).expanduser()))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())  # unknown key: refuse, never learn
        try:
            client.connect(
                self.jump.host,
                port=self.jump.port,
                username=self.jump.user,
                key_filename=self.jump.key_file,
                timeout=10,
                banner_timeout=10,
                auth_timeout=10,
            )
        except (paramiko.SSHException, OSError) as exc:
            raise UserError(f"jump host {self.jump.host}:{self.jump.port}: {exc}") from exc
        self.client = client
        transport = client.get_transport()
        assert transport is not None  # connect() succeeded
        open_channel, target = transport.open_channel, self.target

        class Forward(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                try:
                    channel = open_channel("direct-tcpip", target, self.request.getpeername())
                except (paramiko.SSHException, OSError):
                    return  # the client sees a closed connection and classifies it
                _pump(self.request, channel)

        self.server = _Server(("127.0.0.1", 0), Forward)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def local_port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    def __exit__(self, *_exc: object) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
        if self.client:
            self.client.close()


def _pump(sock: socket.socket, channel: Any) -> None:
    try:
        while True:
            readable, _, _ = select.select([sock, channel], [], [])
            if sock in readable:
                data = sock.recv(65536)
                if not data:
                    break
                channel.sendall(data)
            if channel in readable:
                data = channel.recv(65536)
                if not data:
                    break
                sock.sendall(data)
    except OSError:
        pass
    finally:
        channel.close()
        sock.close()
