"""A rack cache for tests and benchmarks: roles/mirror_cache's template, rendered as Ansible would for a
cache host, run by a throwaway nginx in front of a mirror on loopback (`serve --dev`)."""

from __future__ import annotations

from pathlib import Path

import jinja2

from sovinfra.mirror import serve

ROOT = Path(__file__).resolve().parent.parent


def _server(origin: str, listen: str, prefix: Path) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(ROOT / "roles" / "mirror_cache" / "templates"),
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("mirror-cache.conf.j2").render(
        ansible_managed="test",
        __mirror_cache_origin=origin,
        mirror_cache_listen=listen,
        mirror_cache_dir=str(prefix / "cache"),
        mirror_cache_max_size="1g",
        mirror_cache_inactive="1d",
    )


class RackCache(serve.LocalNginx):
    """The rack cache in front of the mirror at `origin` (host:port), started on construction."""

    def __init__(self, origin: str) -> None:
        super().__init__(lambda listen, prefix: _server(origin, listen, prefix), name="cache")
        self.cache_dir = self.prefix / "cache"
        self.start()
