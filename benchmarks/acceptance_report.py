"""The acceptance report at fleet size (fleet acceptance issue; targets: report.html of a 16-node, 128-GPU
run < 2 MB, rendered in < 2 s in chromium).

Anchor, in the same run and the same browser: the report of a 1-node, 8-GPU run (what the page costs when
it holds almost nothing). Load time = navigation to the load event over the DevTools protocol, median of
--repeat fresh tabs. Run:  python3 benchmarks/acceptance_report.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' synthetic fleet and browser driver
from sovinfra.acceptance import rundir
from tests.acceptance_fleet import fleet
from tests.browser import DevTools

SIZES = {"1 node, 8 GPUs (anchor)": (1, 8), "16 nodes, 128 GPUs": (16, 8)}


def load_seconds(tools: DevTools, page: Path) -> float:
    target = tools.call("Target.createTarget", url="about:blank")["targetId"]
    session = tools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    tools.call("Page.enable", session)
    started = time.perf_counter()
    tools.call("Page.navigate", session, url=page.as_uri())
    tools.wait_for("Page.loadEventFired")
    # The first paint after layout: ask the page for its size (forces layout) once it has loaded.
    tools.call("Runtime.evaluate", session, expression="document.body.scrollHeight", returnByValue=True)
    seconds = time.perf_counter() - started
    tools.call("Target.closeTarget", targetId=target)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    browser = shutil.which("chromium")
    if not browser:
        raise SystemExit("chromium is not installed (scripts/setup installs it)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        pages = {}
        for name, (nodes, gpus) in SIZES.items():
            summary, records = fleet(nodes, gpus)
            page = rundir.write(Path(tmp) / f"n{nodes}", summary, records, {}) / "report.html"
            pages[name] = (page, len(records), page.stat().st_size)
        tools = DevTools(browser, Path(tmp) / "profile")
        try:
            load_seconds(tools, next(iter(pages.values()))[0])  # warm the browser
            for name, (page, count, size) in pages.items():
                seconds = statistics.median(load_seconds(tools, page) for _ in range(args.repeat))
                rows.append((name, count, size, seconds))
        finally:
            tools.close()
    anchor = rows[0][3]
    print("| report | records | bytes | load s (median) | vs anchor |")
    print("| --- | --- | --- | --- | --- |")
    for name, count, size, seconds in rows:
        print(f"| {name} | {count} | {size} | {seconds:.3f} | {seconds / anchor:.2f}x |")


if __name__ == "__main__":
    main()
