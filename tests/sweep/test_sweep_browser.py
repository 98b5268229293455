"""sweep.html in headless Chromium, with the helpers report.html's browser test uses (the chromium fixture
skips only where chromium is missing and this user is not root): it loads with no console message, and its
Pareto and mult-adds plots are in the DOM with their fronts."""

from __future__ import annotations

import re

import pytest

from edgekit.sweep.html import write_sweep_html
from report.test_browser import WINDOW, chromium, layout_of, render  # noqa: F401 (chromium is a fixture)

from .handmade import IDS, hand_sweep

pytestmark = pytest.mark.slow  # starts a browser


def test_sweep_html_renders_without_errors_and_with_its_plots(chromium, tmp_path):
    page = write_sweep_html(hand_sweep(), tmp_path / "sweep.html")
    dom, console = render(chromium, page, tmp_path)
    assert console == []
    assert "<h1>edgekit sweep: grid.yaml</h1>" in dom
    assert re.findall(r'<svg id="([^"]+)"', dom) == ["pareto-0", "pareto-1", "macs-0"]
    for svg_id, front_points in (("pareto-0", 3), ("pareto-1", 4)):  # on the host, C is dominated by B
        start = dom.index(f'<svg id="{svg_id}"')
        plot = dom[start:dom.index("</svg>", start)]
        assert len(re.search(r'<polyline points="([^"]+)"', plot).group(1).split()) == front_points
    assert f"{IDS[2]} has fewer mult-adds than {IDS[1]} but costs more" in dom



def test_sweep_html_fits_a_1280_pixel_window_with_no_overlapping_labels(chromium, tmp_path):
    page = write_sweep_html(hand_sweep(), tmp_path / "sweep.html")
    layout = layout_of(chromium, page.read_text(), tmp_path)
    assert layout["view"] <= WINDOW[0]
    assert layout["overlaps"] == [] and layout["misplaced"] == []
    assert layout["wide"] == [] and layout["page"] <= layout["view"]
    assert layout["clipped"] == [], layout["clipped"]  # long device / runtime titles are squeezed in
