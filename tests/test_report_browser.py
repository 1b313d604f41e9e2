"""report.html in a real browser: headless Chromium (Debian's ``chromium``) through Playwright.

No browser is downloaded: Playwright drives the system Chromium (``$SHAPEOOD_CHROMIUM``, else
``chromium`` on PATH, else ``/usr/bin/chromium``). Without it the test fails and says how to
install it; ``.ci/run`` installs it on a fresh machine.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from report_helpers import make_run
from shapeood.report import aggregate, write_report

# 16 methods: the colour/line-style cycle and the legend must cope with all of them.
METHODS = [
    "msp", "max_logit", "energy", "odin", "dice", "react", "ash_p", "ash_b", "ash_s", "scale",
    "lhact", "himplos", "extra_a", "extra_b", "extra_c", "extra_d",
]  # fmt: skip
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str:
    for candidate in (os.environ.get("SHAPEOOD_CHROMIUM"), shutil.which("chromium"),
                      "/usr/bin/chromium"):  # fmt: skip
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.fail(
        "no Chromium found for the browser test: install Debian's package "
        "(apt-get update && apt-get install -y chromium) or set SHAPEOOD_CHROMIUM to the binary"
    )


def open_report(page_path: Path, screenshot: Path) -> dict:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser test needs playwright: pip install -e '.[dev]'")
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_path.resolve().as_uri(), wait_until="load")
            state = page.evaluate(
                """() => ({
                    images: Array.from(document.images).map(i => ({
                        alt: i.alt, complete: i.complete, width: i.naturalWidth})),
                    summaryRows: Array.from(
                        document.querySelectorAll('#summary tbody tr')).map(
                        r => r.cells[0].textContent.trim()),
                    bold: document.querySelectorAll('#summary b').length,
                    title: document.title,
                })"""
            )
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    state["errors"] = errors
    state["requests"] = [u for u in requests if not u.startswith(("file:", "data:"))]
    return state


def test_report_renders_in_chromium(tmp_path):
    runs = [make_run(METHODS, seed=s, model=f"net{s}") for s in range(3)]
    tables = [df for df, _ in runs]
    written = write_report(aggregate(tables), tmp_path / "report", scores=runs[0][1], runs=tables)
    state = open_report(written["html"], tmp_path / "report" / "screenshot.png")
    assert state["errors"] == []
    assert state["requests"] == []  # nothing from the network
    n_plots = 2 * 3 + len(METHODS)  # ROC + histograms per OOD set, one APS grid per method
    assert len(state["images"]) == n_plots
    undecoded = [i["alt"] for i in state["images"] if not (i["complete"] and i["width"] > 0)]
    assert undecoded == []
    assert state["summaryRows"] == METHODS
    assert state["bold"] >= 4
    shot = tmp_path / "report" / "screenshot.png"
    assert shot.stat().st_size > 10_000
