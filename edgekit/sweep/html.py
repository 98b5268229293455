"""sweep.html: the re-measured Tables 6 and 7, one Pareto plot per device and runtime (top-1 against the
measured cost of each point's shipped file, front drawn), the same points against mult-adds, and the rank
agreement (Kendall's τ) of mult-adds and measured cost per series, naming the pairs whose order flips.
One self-contained page: inline SVG from ``edgekit.report.plots``, no JavaScript, no external load.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from edgekit.artifacts import write_atomically
from edgekit.report import plots
from edgekit.report.html import CSP, STYLE
from edgekit.report.html import _table  # the report page's table renderer, reused as is
from edgekit.sweep.results import (
    Series, cost_of, cost_series, deployed, done_points, pareto_front, rank_agreement, table,
)

FRONT_COLOR = plots.PALETTE[1]


def write_sweep_html(sweep: dict, path: Path) -> Path:
    page = render_sweep_html(sweep)
    return write_atomically(path, lambda tmp: tmp.write_text(page, encoding="utf-8"))


def render_sweep_html(sweep: dict) -> str:
    title = f"edgekit sweep: {sweep['recipe']}"
    sections = [_overview(sweep), _table_section(sweep), _pareto_section(sweep), _macs_section(sweep),
                _agreement_section(sweep)]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{escape(title)}</title><style>{STYLE}</style></head><body><h1>{escape(title)}</h1>'
            f'{"".join(sections)}<p class="note">Rendered from sweep.json (schema version '
            f'{escape(str(sweep["schema_version"]))}) by edgekit {escape(str(sweep["edgekit_version"]))}.</p>'
            f'</body></html>\n')


def _overview(sweep: dict) -> str:
    counts = {status: sum(point["status"] == status for point in sweep["points"])
              for status in ("done", "failed", "pending")}
    axes = "; ".join(f"{axis['key']} = {', '.join(map(str, axis['values']))}" for axis in sweep["axes"])
    shared = ", ".join(sweep["set"]) or "none"
    return (f'<p>Grid: {escape(axes)}. Shared overrides: {escape(shared)}. '
            f'{len(sweep["points"])} points: {counts["done"]} built, {counts["failed"]} failed, '
            f'{counts["pending"]} not built yet. Accuracy and cost are those of each point\'s shipped file '
            f'(its <code>quantize.method</code>), measured in each runtime.</p>')


def _table_section(sweep: dict) -> str:
    header, rows, not_done = table(sweep)
    body = _table(header, rows) if rows else '<p class="absent">No point has finished yet.</p>'
    if not_done:
        body += "<h3>Not built</h3>" + _table(["point", "why"], [list(item) for item in not_done])
    return f'<h2 id="table">Width and resolution, re-measured (paper Tables 6 and 7)</h2>{body}'


def _pareto_section(sweep: dict) -> str:
    series_list = cost_series(sweep)
    if not series_list:
        return '<h2 id="pareto">Top-1 against measured cost</h2><p class="absent">No point was profiled.</p>'
    plots_html = []
    for index, series in enumerate(series_list):
        points = [(cost, top1, label) for label, top1, cost in _measured(sweep, series)]
        plots_html.append(_front_plot(f"pareto-{index}", f"{series.label}: top-1 vs {series.metric}", points,
                                      f"{series.metric} ({series.unit}, {series.obtained})"))
    return ('<h2 id="pareto">Top-1 against measured cost, per device and runtime</h2><p class="note">Each point\'s '
            'shipped file; the line joins the Pareto front (no other point is both cheaper and more accurate). '
            'Emulated devices count instructions per inference, never a latency.</p>' + "".join(plots_html))


def _macs_section(sweep: dict) -> str:
    runtimes = list(dict.fromkeys(item["runtime"] for point in done_points(sweep) for item in deployed(point)))
    plots_html = []
    for index, runtime in enumerate(runtimes):
        points = [(point["model"]["macs"], item["top1"], point["id"]) for point in done_points(sweep)
                  for item in deployed(point) if item["runtime"] == runtime]
        plots_html.append(_front_plot(f"macs-{index}", f"{runtime}: top-1 vs mult-adds", points, "mult-adds"))
    if not plots_html:
        return ""
    return ('<h2 id="macs">The same points against mult-adds</h2><p class="note">The paper\'s cost measure, '
            'for contrast with the measured plots above.</p>' + "".join(plots_html))


def _front_plot(svg_id: str, title: str, points: list[tuple[float, float, str]], x_label: str) -> str:
    if not points:
        return f'<p class="absent">{escape(title)}: no point measured.</p>'
    dots = plots.Series("points", plots.PALETTE[0], [(x, y) for x, y, _ in points], [label for _, _, label in points])
    front = plots.Series("Pareto front", FRONT_COLOR, [(x, y) for x, y, _ in pareto_front(points)])
    return plots.scatter_svg(svg_id, title, [dots], x_label, "top-1 %", lines=[front])


def _agreement_section(sweep: dict) -> str:
    rows = []
    for series in cost_series(sweep):
        agreement = rank_agreement(sweep, series)
        tau = "-" if agreement.tau is None else f"{agreement.tau:.2f}"
        flips = "; ".join(f"{cheap} has fewer mult-adds than {costly} but costs more" for cheap, costly in agreement.flips)
        rows.append([series.label, tau, str(agreement.pairs), flips or "none"])
    if not rows:
        return ""
    return ('<h2 id="kendall">Do mult-adds rank the points as the device does? (Kendall τ)</h2>'
            '<p class="note">τ-b between mult-adds and measured cost over the points measured in each series: 1 is '
            'the same order; every flipped pair is named.</p>'
            + _table(["series", "Kendall τ", "pairs", "pairs whose order flips"], rows))


def _measured(sweep: dict, series: Series) -> list[tuple[str, float, float]]:
    """(point id, top-1, cost) of each point's shipped file in ``series``."""
    found = []
    for point in done_points(sweep):
        cost = cost_of(point, series)
        top1 = next((item["top1"] for item in deployed(point) if item["runtime"] == series.runtime), None)
        if cost is not None and top1 is not None:
            found.append((point["id"], top1, cost))
    return found

