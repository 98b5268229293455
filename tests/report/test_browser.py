"""report.html in headless Chromium: it loads with no console message and its plots are in the DOM.

CI installs Debian's chromium through scripts/setup-browser.sh. The test skips only where chromium is
missing and this user cannot install it (not root); as root a missing chromium is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edgekit.report import write_html

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
         "--enable-logging=stderr", "--v=0"]


@pytest.fixture(scope="module")
def chromium() -> Path:
    if CHROMIUM.is_file():
        return CHROMIUM
    if os.geteuid() != 0:
        pytest.skip("chromium is not installed and this user is not root: run 'sudo bash scripts/setup-browser.sh'")
    pytest.fail("chromium is missing: run 'bash scripts/setup-browser.sh' (scripts/setup.sh --dev does)")


def render(chromium: Path, page: Path, tmp_path: Path) -> tuple[str, list[str]]:
    """(the DOM after load, the page's console messages)."""
    profile = tmp_path / "chromium-profile"
    command = [str(chromium), *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.resolve().as_uri()]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "HOME": str(tmp_path)})
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return done.stdout, console


def test_report_html_renders_without_errors_and_with_its_plots(chromium, full_report, tmp_path):
    page = write_html(full_report, tmp_path / "report.html")
    dom, console = render(chromium, page, tmp_path)
    assert console == []
    assert "<h1>edgekit report:" in dom
    ids = set(re.findall(r'<svg id="([^"]+)"', dom))
    assert {"plot-size", "plot-loss", "plot-accuracy-latency-host"} <= ids
    assert any(plot_id.startswith("plot-per-node-") for plot_id in ids)
    device_count = len({profile["device"] for profile in full_report["profiles"]})
    assert len([i for i in ids if i.startswith("plot-accuracy-latency-")]) == device_count


def test_a_page_with_an_external_asset_would_be_caught(chromium, full_report, tmp_path):
    """The check above can see a failure: the page's CSP turns an external load into a console message."""
    page = tmp_path / "report.html"
    write_html(full_report, page)
    page.write_text(page.read_text().replace("</body>", '<img src="http://192.0.2.1/x.png"></body>'))
    _dom, console = render(chromium, page, tmp_path)
    assert any("Content Security Policy" in line for line in console)
