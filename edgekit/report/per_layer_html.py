"""The "Per layer" section of report.html: each int8 file's layers ranked by the SQNR they lose."""

from __future__ import annotations

import textwrap
from html import escape

from edgekit.report.plots import bar_svg

WORST_COLOR, OTHER_COLOR = "#c0392b", "#2e86c1"
SHOWN_WORST = 3


def ranked_layers(entry: dict) -> list[dict]:
    """An entry's layers, the one that loses the most SQNR itself first."""
    return sorted(entry.get("layers", []), key=lambda layer: -layer.get("sqnr_drop_db", 0.0))


def per_layer_section(report: dict) -> str:
    entries = report.get("per_layer") or []
    if not entries:
        return ('<section><h2>Per layer</h2><p class="absent">Per-layer error: not measured in this build.'
                "</p></section>")
    blocks = [_entry_block(index, entry) for index, entry in enumerate(entries)]
    intro = ("<p>Each conv/FC output (BatchNorm and activation folded, as the runtime's kernel writes it), read "
             "inside the runtime and compared with the float model's on the same test images. SQNR is "
             "cumulative; layers are ranked by the SQNR they lose themselves (their input's SQNR minus theirs), "
             "worst first.</p>")
    return f"<section><h2>Per layer</h2>{intro}{''.join(blocks)}</section>"


def _entry_block(index: int, entry: dict) -> str:
    layers = ranked_layers(entry)
    title = f"{entry['artifact']} in {entry['runtime']} ({entry['samples']} images)"
    bars = [(f"{layer['layer']} (−{layer.get('sqnr_drop_db', 0.0):.1f} dB)", layer["sqnr_db"],
             WORST_COLOR if rank < SHOWN_WORST else OTHER_COLOR) for rank, layer in enumerate(layers)]
    chart = bar_svg(f"per-layer-{index}", f"SQNR per layer, {title}", bars, "SQNR (dB)",
                    value_format=lambda value: f"{value:.1f} dB")
    floats = [layer["layer"] for layer in layers if layer.get("kernel") == "float"]
    kept = f"<p>Float kernels: {escape(', '.join(floats))}</p>" if floats else ""
    return f"<h3>{escape(title)}</h3>{chart}{kept}"


def worst_layer_lines(report: dict, width: int = 120) -> list[str]:
    """For the terminal summary: the three layers that lose the most SQNR, per int8 file and runtime, wrapped
    to ``width`` columns."""
    lines = []
    for entry in report.get("per_layer") or []:
        worst = ", ".join(f"{layer['layer']} (−{layer.get('sqnr_drop_db', 0.0):.1f} dB, SQNR {layer['sqnr_db']:.1f})"
                          for layer in ranked_layers(entry)[:SHOWN_WORST])
        lines += textwrap.wrap(f"worst layers {entry['artifact']} ({entry['runtime']}): {worst}", width=width,
                               subsequent_indent="  ", break_on_hyphens=False)
    return lines
