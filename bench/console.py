"""The web console's figures, in Debian's Chromium against a real `mlapi serve`.

    .venv/bin/python bench/console.py [--runs 5]

Prints the bytes a first load transfers (signed out, then signed in), the time to first
render (first contentful paint), and the time from pressing Detect to the boxes drawn for
the 1080p sample photo with the Try page's preselected detectors, as medians; then
axe-core's findings on each page by impact (its script from the cache the browser tests
fill: run them once first).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, sync_playwright

from mlapi import samples
from mlapi.store import ModelCache

MLAPI = str(Path(sys.executable).with_name("mlapi"))
PASSWORD = "bench console password"
TRANSFERRED = """() => [performance.getEntriesByType("navigation")[0],
    ...performance.getEntriesByType("resource")].reduce((n, e) => n + e.transferSize, 0)"""
FIRST_PAINT = """() => performance.getEntriesByName("first-contentful-paint")[0].startTime"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    return platform.processor()


def sign_in(page: Page, url: str) -> None:
    page.goto(url + "/")
    page.get_by_label("Username").fill("bench")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.locator("#try-detectors input").first.wait_for()


AXE_RUN = """() => axe.run(document, {resultTypes: ["violations"]}).then((r) =>
    r.violations.map((v) => `${v.impact} ${v.id} (${v.nodes.length})`))"""


def axe_findings(page: Page, axe: str) -> list[str]:
    """axe-core's violations, served as the page's own script (its CSP allows no other)."""
    page.route("**/console/static/axe.min.js", lambda route: route.fulfill(
        body=axe, content_type="text/javascript"))  # fmt: skip
    page.add_script_tag(url="/console/static/axe.min.js")
    found: list[str] = page.evaluate(AXE_RUN)
    return found


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("needs Debian's chromium package")
    store = ModelCache()
    photo = samples.fetch(store) / "face_detection_input.jpg"
    axe = store.root / "clients/axe-core-4.10.3/node_modules/axe-core/axe.min.js"
    work = Path(tempfile.mkdtemp(prefix="mlapi-console-bench-"))
    env = dict(os.environ, MLAPI_DATA_DIR=str(work / "data"))
    subprocess.run([MLAPI, "adduser", "bench", "--password-stdin"], input=PASSWORD + "\n",
                   env=env, text=True, check=True, capture_output=True)  # fmt: skip
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([MLAPI, "serve", "--port", str(port)], env=env,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "/ready", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=chromium, args=args)
            print(f"mlapi console on {cpu()}; Chromium {browser.version}; medians of {runs}")
            cold: list[float] = []
            paints: list[float] = []
            warm: list[float] = []
            drawn: list[float] = []
            server_ms: list[float] = []
            findings: dict[str, list[str]] = {}
            for run in range(runs):
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                page = context.new_page()
                page.goto(url + "/")
                page.get_by_label("Username").wait_for()
                page.wait_for_load_state("networkidle")
                cold.append(page.evaluate(TRANSFERRED))
                paints.append(page.evaluate(FIRST_PAINT))
                sign_in(page, url)
                page.wait_for_load_state("networkidle")
                warm.append(page.evaluate(TRANSFERRED))
                for _ in range(2):  # the first warms the detectors the page ticks
                    page.locator("#try-photo").set_input_files(str(photo))
                    page.evaluate("() => { window.mlapiTimings = {}; }")
                    page.get_by_role("button", name="Detect", exact=True).click()
                    page.wait_for_function("() => window.mlapiTimings.drawn", timeout=60_000)
                timings: dict[str, Any] = page.evaluate("() => window.mlapiTimings")
                drawn.append(timings["drawn"] - timings["submitted"])
                shown = page.locator("#try-timing").text_content() or ""
                server_ms.append(float(shown.split("total ")[1].split(" ms")[0]))
                if run == runs - 1 and axe.exists():
                    for name in ("Try", "People", "Keys", "Status"):
                        if name != "Try":
                            page.get_by_role("link", name=name, exact=True).click()
                            page.wait_for_load_state("networkidle")
                        findings[name] = axe_findings(page, axe.read_text())
                context.close()
            browser.close()
    finally:
        server.terminate()
        server.wait(30)
    for name in ("index.html", "console.js", "console.css", "favicon.svg"):
        size = (Path(__file__).resolve().parent.parent / "mlapi/console/static" / name).stat()
        print(f"  {name:<12} {size.st_size:>7,} bytes")
    print(f"first load, signed out: {statistics.median(cold):,.0f} bytes transferred")
    print(f"first load, signed in (with the Try form): {statistics.median(warm):,.0f} bytes")
    print(f"time to first render: {statistics.median(paints):.0f} ms")
    print(
        f"Detect to boxes drawn, 1080p sample: {statistics.median(drawn):.0f} ms "
        f"(server total {statistics.median(server_ms):.0f} ms)"
    )
    for name, found in findings.items():
        print(f"axe-core on {name}: {'; '.join(found) or 'no violations'}")
    if not findings:
        print("axe-core not in the cache: run tests/test_console_browser.py once")
    return 0


if __name__ == "__main__":
    sys.exit(main())
