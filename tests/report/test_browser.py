"""report.html in headless Chromium: it loads with no console message and its plots are in the DOM.

CI installs Debian's chromium through scripts/setup-browser.sh. The test skips only where chromium is
missing and this user cannot install it (not root); as root a missing chromium is a failure.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edgekit.report import render_html, write_html

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


def render(chromium: Path, page: Path, tmp_path: Path, flags: list[str] = ()) -> tuple[str, list[str]]:
    """(the DOM after load, the page's console messages)."""
    profile = tmp_path / "chromium-profile"
    command = [str(chromium), *FLAGS, *flags, f"--user-data-dir={profile}", "--dump-dom", page.resolve().as_uri()]
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


# --- layout in a 1280-pixel window: headline, label overlap, table width -------------------------------------

WINDOW = (1280, 900)
#: the real smoke build's report (recipes/smoke.yaml on a 2-core x86 host): six clustered points on the host
SMOKE_REPORT = Path(__file__).with_name("data") / "report_smoke_hostx86.json"
#: measures the laid-out page and writes what it finds into <pre id="layout-check"> (test copies only)
LAYOUT_SCRIPT = """<script>(function () {
  function hit(a, b) { return a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom; }
  function gap(box, r) {
    var c = r.left + r.width / 2, m = r.top + r.height / 2;
    var dx = Math.max(box.left - c, 0, c - box.right), dy = Math.max(box.top - m, 0, m - box.bottom);
    return Math.sqrt(dx * dx + dy * dy);
  }
  var view = document.documentElement.clientWidth;
  var found = {headline: !!document.querySelector('#headline p.verdict strong'), view: view,
               page: document.documentElement.scrollWidth, overlaps: [], misplaced: [], wide: [], scrolled: []};
  document.querySelectorAll('svg').forEach(function (svg) {
    var labels = Array.prototype.slice.call(svg.querySelectorAll('text[data-label-for]'));
    var markers = Array.prototype.slice.call(svg.querySelectorAll('[data-point]'));
    labels.forEach(function (label, i) {
      var box = label.getBoundingClientRect(), own = label.getAttribute('data-label-for');
      labels.slice(i + 1).forEach(function (other) {
        if (hit(box, other.getBoundingClientRect())) found.overlaps.push(svg.id + ': ' + label.textContent + ' / ' + other.textContent);
      });
      var nearest = null, best = Infinity;
      markers.forEach(function (marker) {
        var r = marker.getBoundingClientRect(), d = gap(box, r);
        if (marker.getAttribute('data-point') !== own && hit(box, r)) found.overlaps.push(svg.id + ': ' + label.textContent + ' on a marker');
        if (d < best - 0.5 || (Math.abs(d - best) <= 0.5 && marker.getAttribute('data-point') === own)) { best = d; nearest = marker; }
      });
      if (!nearest || nearest.getAttribute('data-point') !== own) found.misplaced.push(svg.id + ': ' + label.textContent);
    });
  });
  document.querySelectorAll('table').forEach(function (table) {
    var right = table.getBoundingClientRect().right, box = table.closest('.scroll');
    var own = box && /auto|scroll/.test(getComputedStyle(box).overflowX) && box.getBoundingClientRect().right <= view + 0.5;
    if (right > view + 0.5 && !own) found.wide.push(table.rows[0].textContent.slice(0, 60));
    if (box && table.getBoundingClientRect().width > box.clientWidth + 0.5) found.scrolled.push(table.rows[0].textContent.slice(0, 60));
  });
  found.clipped = [];
  document.querySelectorAll('svg.plot > text[font-weight="bold"]').forEach(function (title) {
    if (title.getBoundingClientRect().right > title.ownerSVGElement.getBoundingClientRect().right + 0.5)
      found.clipped.push(title.textContent.slice(0, 60));
  });
  var out = document.createElement('pre'); out.id = 'layout-check'; out.textContent = JSON.stringify(found);
  document.body.appendChild(out);
})();</script>"""


def layout_of(chromium: Path, page_html: str, tmp_path: Path) -> dict:
    """The page laid out in a 1280-px window: headline present, label overlaps and misplaced labels,
    tables wider than the window outside a scroll box of their own, tables that need scrolling."""
    csp = 'content="default-src \'none\'; style-src \'unsafe-inline\'"'
    assert csp in page_html
    page = tmp_path / "layout.html"
    page.write_text(page_html.replace(csp, csp[:-1] + "; script-src 'unsafe-inline'\"")
                    .replace("</body>", LAYOUT_SCRIPT + "</body>"))
    dom, console = render(chromium, page, tmp_path, flags=[f"--window-size={WINDOW[0]},{WINDOW[1]}"])
    assert console == []
    found = re.search(r'<pre id="layout-check">(.*?)</pre>', dom, re.S)
    assert found, "the layout script did not run"
    return json.loads(html.unescape(found.group(1)))


@pytest.mark.parametrize("which", ["smoke build", "derived full report"])
def test_headline_labels_and_tables_fit_a_1280_pixel_window(chromium, full_report, tmp_path, which):
    report = json.loads(SMOKE_REPORT.read_text()) if which == "smoke build" else full_report
    layout = layout_of(chromium, render_html(report), tmp_path)
    assert layout["view"] <= WINDOW[0]
    assert layout["headline"], "no headline verdict at the top of the page"
    assert layout["overlaps"] == [] and layout["misplaced"] == []
    assert layout["wide"] == [] and layout["page"] <= layout["view"]
    assert layout["scrolled"] == []  # every table of these reports fits without scrolling
    assert layout["clipped"] == []


def test_a_long_plot_title_is_squeezed_into_its_plot(chromium, tmp_path):
    from edgekit.report import plots

    title = ("arm64-cortex-a76-emulated / onnxruntime / cpu / 1 thread: top-1 vs instructions per inference "
             "(emulated, net of the harness)")
    svg = plots.scatter_svg("long-title", title, [plots.Series("points", plots.PALETTE[0], [(1.0, 2.0)])], "x", "y")
    assert 'lengthAdjust="spacingAndGlyphs"' in svg
    unsqueezed = svg.replace('id="long-title"', 'id="unsqueezed"').replace(' lengthAdjust="spacingAndGlyphs"', "")
    unsqueezed = re.sub(r' textLength="[\d.]+"', "", unsqueezed)
    page = render_html(json.loads(SMOKE_REPORT.read_text())).replace("</body>", svg + unsqueezed + "</body>")
    assert layout_of(chromium, page, tmp_path)["clipped"] == [title[:60]]  # the unsqueezed copy only


def test_the_layout_checks_catch_an_overlap_a_misplaced_label_a_wide_table_and_no_headline(chromium, tmp_path):
    page = render_html(json.loads(SMOKE_REPORT.read_text()))
    labels = re.findall(r'<text data-label-for="(\d+)" x="([\d.]+)" y="([\d.]+)"[^>]*>([^<]*)</text>', page)
    assert len(labels) >= 2
    (first, x, y, text), (second, *_rest) = labels[0], labels[1]
    # a copy of the first label drawn on the second's place and named as the second's: overlap, misplaced
    moved = re.search(rf'<text data-label-for="{second}" x="([\d.]+)" y="([\d.]+)"[^>]*>[^<]*</text>', page)
    page = page.replace(moved.group(0), moved.group(0) + f'<text data-label-for="{first}" x="{moved.group(1)}" '
                                                         f'y="{moved.group(2)}" font-size="10">{text}</text>', 1)
    page = page.replace('<section id="headline"', '<section id="not-the-headline"')
    page = page.replace("</body>", '<table style="width:1600px"><tr><td>wide</td></tr></table></body>')
    layout = layout_of(chromium, page, tmp_path)
    assert not layout["headline"]
    assert layout["overlaps"] and layout["misplaced"]
    assert layout["wide"] == ["wide"]


def test_a_wide_table_in_its_own_scroll_box_is_allowed(chromium, tmp_path):
    page = render_html(json.loads(SMOKE_REPORT.read_text())).replace(
        "</body>", '<div class="scroll"><table style="width:1600px"><tr><td>wide</td></tr></table></div></body>')
    layout = layout_of(chromium, page, tmp_path)
    assert layout["wide"] == [] and layout["scrolled"] == ["wide"] and layout["page"] <= layout["view"]
