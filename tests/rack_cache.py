"""A rack cache for tests and benchmarks: nginx with roles/mirror_cache's template, rendered as Ansible
would for a cache host, in front of a mirror on loopback (`serve --dev`)."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import jinja2

from sovinfra.mirror import serve

ROOT = Path(__file__).resolve().parent.parent
PROBE = "/api/models/probe/probe"  # passed to the mirror, which answers 404


class RackCache:
    """nginx with the role's template, rendered as Ansible would for a cache host, in front of `origin`."""

    def __init__(self, origin: str) -> None:
        self.sock = serve.listen_socket(0)
        self.port = int(self.sock.getsockname()[1])
        self.prefix = Path(tempfile.mkdtemp(prefix="sovinfra-cache-"))
        (self.prefix / "tmp").mkdir()
        self.cache_dir = self.prefix / "cache"
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(ROOT / "roles" / "mirror_cache" / "templates"),
            undefined=jinja2.StrictUndefined,
        )
        server = self.prefix / "cache-server.conf"
        server.write_text(
            env.get_template("mirror-cache.conf.j2").render(
                ansible_managed="test",
                __mirror_cache_origin=origin,
                mirror_cache_listen=f"127.0.0.1:{self.port}",
                mirror_cache_dir=str(self.cache_dir),
                mirror_cache_max_size="1g",
                mirror_cache_inactive="1d",
            )
        )
        self.conf = self.prefix / "nginx.conf"
        self.conf.write_text(serve.dev_conf(self.prefix, server, "root"))
        cmd = ["nginx", "-c", str(self.conf), "-p", str(self.prefix), "-e", str(self.prefix / "error.log")]
        test = subprocess.run([*cmd, "-t"], capture_output=True, text=True, check=False)
        if test.returncode != 0:
            raise RuntimeError(f"nginx refused the rack cache's config: {test.stderr}")
        fd = self.sock.fileno()
        self.proc = subprocess.Popen(cmd, env={**os.environ, "NGINX": f"{fd};"}, pass_fds=(fd,))
        deadline = time.monotonic() + 10
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the rack cache's nginx did not start: {self.prefix / 'error.log'}")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _answers(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=0.5)
        try:
            conn.request("HEAD", PROBE)
            conn.getresponse()
            return True
        except OSError:
            return False
        finally:
            conn.close()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)  # fast: kept-alive connections need not wind down
        self.proc.wait(timeout=10)
        self.sock.close()
        shutil.rmtree(self.prefix, ignore_errors=True)
