"""sweep.html from the hand-checked sweep: the table, one Pareto plot per device and runtime with its front,
the mult-adds plot, and Kendall's τ naming the flipped pair."""

from __future__ import annotations

import re

from edgekit.sweep.html import render_sweep_html

from .handmade import IDS, hand_sweep


def test_page_holds_table_plots_fronts_and_rank_agreement():
    page = render_sweep_html(hand_sweep())
    assert page.count("<svg") == 3  # host latency, emulated instructions, mult-adds
    for svg_id in ("pareto-0", "pareto-1", "macs-0"):
        assert f'<svg id="{svg_id}"' in page
    assert "host litert/xnnpack 1t: latency (ms): top-1 vs latency" in page
    assert "cortex-a76 litert/xnnpack 1t: instructions (instructions, emulated): top-1 vs instructions" in page
    host_plot = page[page.index('<svg id="pareto-0"'):page.index("</svg>", page.index('<svg id="pareto-0"'))]
    front = re.search(r'<polyline points="([^"]+)"', host_plot).group(1).split()
    assert len(front) == 3  # A, B, D: C is dominated on the host
    arm_plot = page[page.index('<svg id="pareto-1"'):]
    assert len(re.search(r'<polyline points="([^"]+)"', arm_plot).group(1).split()) == 4  # nothing dominated
    assert f"{IDS[2]} has fewer mult-adds than {IDS[1]} but costs more" in page
    assert "<td>0.67</td>" in page and "<td>1.00</td>" in page
    assert "training diverged at step 3" in page
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
