"""The acceptance report in a real browser (Debian's chromium, headless, driven over the DevTools
protocol): it renders, the screenshot is not blank, the verdict and the failing GPU's serial are visible on
screen, and the page requested nothing but itself."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

from sovinfra.acceptance import rundir
from tests.acceptance_fleet import BAD_SERIAL, fleet
from tests.conftest import missing


class DevTools:
    """Chromium's DevTools protocol over --remote-debugging-pipe (fd 3 in, fd 4 out, NUL-framed JSON)."""

    def __init__(self, browser: str, profile: Path) -> None:
        # The child's ends above fd 4 first, so bash's 3</4> redirections cannot overwrite them.
        to_read, self._to = os.pipe()
        self._from, from_write = os.pipe()
        to_read, from_write = (self._high(to_read), self._high(from_write))
        args = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
            "--window-size=1280,1600",
            "about:blank",
        ]
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec "$@" 3<&{to_read} 4>&{from_write}', "bash", *args],
            pass_fds=(to_read, from_write),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_read)
        os.close(from_write)
        self._buffer = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []

    @staticmethod
    def _high(fd: int) -> int:
        moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
        os.close(fd)
        return moved

    def _message(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from, 1 << 20)
            assert chunk, "chromium closed the DevTools pipe"
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(raw)

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._to, json.dumps(msg).encode() + b"\0")
        while True:
            got = self._message()
            if got.get("id") == self._next:
                assert "error" not in got, got
                return dict(got.get("result", {}))
            self.events.append(got)

    def wait_for(self, method: str) -> dict[str, Any]:
        while True:
            got = self._message()
            self.events.append(got)
            if got.get("method") == method:
                return got

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self._to)
        os.close(self._from)


def png_size_and_pixels(data: bytes) -> tuple[int, int, bytes]:
    """Width, height and the decompressed scanlines of a PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return width, height, zlib.decompress(idat)


# Where an element is on screen and whether it is shown (a hidden or off-page element is not "visible").
VISIBLE = """(sel) => { const el = document.querySelector(sel); if (!el) return null;
  el.scrollIntoView(); const r = el.getBoundingClientRect(); const s = getComputedStyle(el);
  return {text: el.innerText, shown: s.visibility !== 'hidden' && s.display !== 'none' && r.width > 0
          && r.height > 0 && r.top >= -1 && r.bottom <= innerHeight + 1}; }"""


def test_the_report_renders_in_chromium_and_fetches_nothing(tmp_path: Path) -> None:
    browser = shutil.which("chromium")
    if not browser:
        missing("chromium is not installed (scripts/setup installs it)")
    summary, records = fleet()
    page = rundir.write(tmp_path / "run", summary, records, {}) / "report.html"
    tools = DevTools(browser, tmp_path / "profile")
    try:
        target = tools.call("Target.createTarget", url="about:blank")["targetId"]
        session = tools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        tools.call("Network.enable", session)
        tools.call("Page.enable", session)
        tools.call("Page.navigate", session, url=page.as_uri())
        tools.wait_for("Page.loadEventFired")
        requested = [
            e["params"]["request"]["url"]
            for e in tools.events
            if e.get("sessionId") == session and e.get("method") == "Network.requestWillBeSent"
        ]

        def visible(selector: str) -> dict[str, Any]:
            expression = f"({VISIBLE})({json.dumps(selector)})"
            got = tools.call("Runtime.evaluate", session, expression=expression, returnByValue=True)
            return dict(got["result"].get("value") or {})

        verdict = visible("#verdict")
        # The top of the page, as a person first sees it.
        shot = base64.b64decode(tools.call("Page.captureScreenshot", session, format="png")["data"])
        bad_gpu = visible(f'tr.gpu[data-serial="{BAD_SERIAL}"]')
        svgs = tools.call(
            "Runtime.evaluate",
            session,
            expression="document.querySelectorAll('svg').length",
            returnByValue=True,
        )["result"]["value"]
    finally:
        tools.close()
    # The page asked for itself and nothing else (no script, font, image or style from anywhere).
    assert requested == [page.as_uri()], requested
    assert (verdict["text"], verdict["shown"]) == ("FAIL", True), verdict
    assert bad_gpu["shown"] and BAD_SERIAL in bad_gpu["text"] and "fail" in bad_gpu["text"], bad_gpu
    assert svgs == 2 * 16  # two plots per endpoint
    (tmp_path / "report.png").write_bytes(shot)
    width, height, pixels = png_size_and_pixels(shot)
    assert width == 1280 and height > 1000, (width, height)  # the window, less what headless keeps
    # Not blank: a white page decompresses to a handful of byte values; text, tables and colour to many.
    assert len(set(pixels)) > 50, len(set(pixels))
