"""The acceptance report in a real browser (Debian's chromium, headless, driven over the DevTools
protocol): it renders, the screenshot is not blank, the verdict and the failing GPU's serial are visible on
screen, and the page requested nothing but itself."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

from sovinfra.acceptance import rundir
from tests.acceptance_fleet import BAD_SERIAL, fleet
from tests.browser import DevTools, png_size_and_pixels
from tests.conftest import missing

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
    assert svgs == 3 * 16  # three plots per endpoint: TTFT, ITL, throughput vs latency
    (tmp_path / "report.png").write_bytes(shot)
    width, height, pixels = png_size_and_pixels(shot)
    assert width == 1280 and height > 1000, (width, height)  # the window, less what headless keeps
    # Not blank: a white page decompresses to a handful of byte values; text, tables and colour to many.
    assert len(set(pixels)) > 50, len(set(pixels))
