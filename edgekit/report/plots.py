"""Inline SVG plots drawn in plain Python (no matplotlib, no JavaScript): scatter, horizontal bars, lines.

Each function returns one ``<svg id=...>`` element as a string, with every text escaped, a ``<title>``
for screen readers, and axes whose ticks are round numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

WIDTH = 720
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 64, 24, 40, 48
LEGEND_WIDTH = 170  # right margin of plots with a legend
PALETTE = ("#1f6fb4", "#d1492e", "#2e9e5b", "#8a5cc2", "#c28a1f", "#3aa6b9", "#7a7a7a")
FLOAT_COLOR, INT8_COLOR = PALETTE[0], PALETTE[1]


@dataclass
class Series:
    name: str
    color: str
    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # one per point (scatter only)
    marker: str = "circle"  # circle | square


@dataclass
class Axis:
    low: float
    high: float
    ticks: list[float]


def nice_axis(values: list[float], *, include_zero: bool = False, ticks: int = 5) -> Axis:
    """Round-numbered axis covering ``values``."""
    low, high = min(values), max(values)
    if include_zero:
        low, high = min(low, 0.0), max(high, 0.0)
    if high == low:
        pad = abs(high) * 0.1 or 1.0
        low, high = low - pad, high + pad
    step = _nice_step((high - low) / ticks)
    start, stop = math.floor(low / step) * step, math.ceil(high / step) * step
    count = int(round((stop - start) / step))
    return Axis(start, stop, [start + i * step for i in range(count + 1)])


def format_number(value: float) -> str:
    magnitude = abs(value)
    if magnitude >= 1e9:
        return f"{value / 1e9:.3g} G"
    if magnitude >= 1e6:
        return f"{value / 1e6:.3g} M"
    if magnitude >= 1e4:
        return f"{value / 1e3:.3g} k"
    return f"{value:.4g}"


def scatter_svg(svg_id: str, title: str, series: list[Series], x_label: str, y_label: str,
                lines: list[Series] = ()) -> str:
    """Markers per series; ``lines`` (e.g. a Pareto front) are drawn under them as polylines."""
    height = 340
    xs = [x for s in series for x, _ in s.points]
    x_axis = nice_axis(xs + [max(xs) * 1.05], include_zero=True)  # headroom: no point sits on the edge
    ys = [y for s in series for _, y in s.points]
    y_axis = nice_axis(ys + [max(ys) + 0.1 * (max(ys) - min(ys) or 1.0)])  # headroom above the top point's label
    plot = _Frame(WIDTH, height, x_axis, y_axis, right_margin=LEGEND_WIDTH)
    parts = [plot.axes(x_label, y_label)] + [_polyline(plot, item) for item in lines]
    points = sorted(((x, y, label, item) for item in series
                     for (x, y), label in zip(item.points, item.labels or [""] * len(item.points))),
                    key=lambda point: point[:2])
    centres = [(plot.x(x), plot.y(y)) for x, y, _, _ in points]
    labels = [label for _, _, label, _ in points]
    boxes = place_labels(centres, labels, plot)
    key: list[tuple[int, str, str]] = []  # (number, label, color) of labels that had no room beside their point
    if any(box is None for label, box in zip(labels, boxes) if label):  # number every point, name them below
        key = [(number, label, item.color) for number, (_, _, label, item) in enumerate(points, 1)]
        boxes = place_labels(centres, [str(number) for number in range(1, len(points) + 1)], plot, force=True)
        labels = [str(number) for number in range(1, len(points) + 1)]
    for index, ((x, y, label, item), (cx, cy), text, box) in enumerate(zip(points, centres, labels, boxes)):
        parts.append(_marker(item.marker, cx, cy, item.color, f"{label}: x={format_number(x)}, y={y:.2f}",
                             point=index))
        if text and box is not None:
            parts.append(_text(box[0], box[3] - LABEL_DESCENT, text, size=LABEL_SIZE, color=item.color)
                         .replace("<text ", f'<text data-label-for="{index}" ', 1))
    legend = [(s.name, s.color, s.marker) for s in series] + [(s.name, s.color, "line") for s in lines]
    parts.append(_legend(legend, plot.right + 16, MARGIN_TOP + 8))
    for row, (number, label, color) in enumerate(key):
        parts.append(_text(MARGIN_LEFT, height + 4 + row * 15, f"{number}: {label}", size=11, color=color))
    return _svg(svg_id, title, WIDTH, height + (len(key) * 15 + 8 if key else 0), parts)


LABEL_SIZE, LABEL_DESCENT = 10, 3
#: width of one character of a LABEL_SIZE label, generous for any sans-serif (the browser test measures)
LABEL_CHAR_WIDTH = 6.4
MARKER_RADIUS = 6  # markers are 10 px; one px of room around them


def place_labels(centres: list[tuple[float, float]], labels: list[str], frame: "_Frame", *,
                 force: bool = False) -> list[tuple[float, float, float, float] | None]:
    """A box (x0, y0, x1, y1) beside its own point for each label, overlapping no other label or marker
    and inside the plot; None where none is free (``force``: the least crowded spot instead)."""
    markers = [(cx - MARKER_RADIUS, cy - MARKER_RADIUS, cx + MARKER_RADIUS, cy + MARKER_RADIUS) for cx, cy in centres]
    placed: list[tuple[float, float, float, float]] = []
    boxes: list[tuple[float, float, float, float] | None] = []
    for (cx, cy), label in zip(centres, labels):
        if not label:
            boxes.append(None)
            continue
        width, height = len(label) * LABEL_CHAR_WIDTH + 2, LABEL_SIZE + 3
        candidates = [(cx + 8, cy - height / 2), (cx - 8 - width, cy - height / 2), (cx + 6, cy - 8 - height),
                      (cx - 6 - width, cy - 8 - height), (cx + 6, cy + 8), (cx - 6 - width, cy + 8),
                      (cx - width / 2, cy - 9 - height), (cx - width / 2, cy + 9)]
        inside = [(x, y, x + width, y + height) for x, y in candidates
                  if x >= frame.left + 2 and x + width <= frame.right and y >= frame.top - 8 and y + height <= frame.bottom]
        others = [centre for centre in centres if centre != (cx, cy)]
        free = [box for box in inside if not any(_overlap(box, other) for other in placed + markers)
                and all(_gap(box, other) > _gap(box, (cx, cy)) + 1 for other in others)]  # nearest its own point
        if free:
            box = free[0]
        elif force and (inside or candidates):
            options = inside or [(x, y, x + width, y + height) for x, y in candidates]
            box = min(options, key=lambda b: sum(_overlap(b, other) for other in placed + markers))
        else:
            boxes.append(None)
            continue
        placed.append(box)
        boxes.append(box)
    return boxes


def _gap(box: tuple[float, float, float, float], point: tuple[float, float]) -> float:
    """Distance from ``point`` to the nearest edge of ``box`` (0 inside it)."""
    dx = max(box[0] - point[0], 0.0, point[0] - box[2])
    dy = max(box[1] - point[1], 0.0, point[1] - box[3])
    return math.hypot(dx, dy)


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def bar_svg(svg_id: str, title: str, bars: list[tuple[str, float, str]], value_label: str,
            value_format=format_number) -> str:
    """Horizontal bars: (label, value, color) each, longest value scaled to the plot width; each value
    written with ``value_format`` (one format for every bar)."""
    row, left = 22, 230
    height = MARGIN_TOP + row * len(bars) + MARGIN_BOTTOM
    axis = nice_axis([value for _, value, _ in bars], include_zero=True)
    span = WIDTH - left - MARGIN_RIGHT - 60
    parts = [_text(left, height - 12, value_label, size=11)]
    for index, (label, value, color) in enumerate(bars):
        top = MARGIN_TOP + index * row
        length = span * (value - axis.low) / (axis.high - axis.low)
        parts.append(_text(left - 6, top + 15, _shorten(label, 36), size=11, anchor="end"))
        parts.append(f'<rect x="{left}" y="{top + 3}" width="{length:.1f}" height="{row - 6}" fill="{color}">'
                     f'<title>{escape(label)}: {escape(value_format(value))}</title></rect>')
        parts.append(_text(left + length + 4, top + 15, value_format(value), size=10))
    parts.append(_line(left, MARGIN_TOP, left, MARGIN_TOP + row * len(bars)))
    return _svg(svg_id, title, WIDTH, height, parts)


def line_svg(svg_id: str, title: str, series: list[Series], x_label: str, y_label: str) -> str:
    height = 300
    x_axis = nice_axis([x for s in series for x, _ in s.points], include_zero=True)
    y_axis = nice_axis([y for s in series for _, y in s.points], include_zero=True)
    plot = _Frame(WIDTH, height, x_axis, y_axis, right_margin=LEGEND_WIDTH)
    parts = [plot.axes(x_label, y_label)]
    for item in series:
        parts.append(_polyline(plot, item))
        if len(item.points) == 1:
            parts.append(_marker("circle", plot.x(item.points[0][0]), plot.y(item.points[0][1]), item.color, item.name))
    parts.append(_legend([(s.name, s.color, "line") for s in series], plot.right + 16, MARGIN_TOP + 8))
    return _svg(svg_id, title, WIDTH, height, parts)


def _polyline(plot: "_Frame", item: Series) -> str:
    coords = " ".join(f"{plot.x(x):.1f},{plot.y(y):.1f}" for x, y in item.points)
    return (f'<polyline points="{coords}" fill="none" stroke="{item.color}" stroke-width="1.8">'
            f'<title>{escape(item.name)}</title></polyline>')


class _Frame:
    """Maps data coordinates to pixels inside the margins and draws the axes."""

    def __init__(self, width: int, height: int, x_axis: Axis, y_axis: Axis, *, right_margin: int = MARGIN_RIGHT):
        self.width, self.height, self.x_axis, self.y_axis = width, height, x_axis, y_axis
        self.left, self.right = MARGIN_LEFT, width - right_margin
        self.top, self.bottom = MARGIN_TOP, height - MARGIN_BOTTOM

    def x(self, value: float) -> float:
        axis = self.x_axis
        return self.left + (self.right - self.left) * (value - axis.low) / (axis.high - axis.low)

    def y(self, value: float) -> float:
        axis = self.y_axis
        return self.bottom - (self.bottom - self.top) * (value - axis.low) / (axis.high - axis.low)

    def axes(self, x_label: str, y_label: str) -> str:
        parts = [_line(self.left, self.bottom, self.right, self.bottom),
                 _line(self.left, self.top, self.left, self.bottom)]
        for tick in self.x_axis.ticks:
            parts += [_line(self.x(tick), self.bottom, self.x(tick), self.bottom + 4),
                      _text(self.x(tick), self.bottom + 16, format_number(tick), size=10, anchor="middle")]
        for tick in self.y_axis.ticks:
            parts += [_line(self.left - 4, self.y(tick), self.right, self.y(tick), color="#e4e4e4"),
                      _text(self.left - 7, self.y(tick) + 3, format_number(tick), size=10, anchor="end")]
        parts.append(_text((self.left + self.right) / 2, self.height - 10, x_label, size=11, anchor="middle"))
        middle = (self.top + self.bottom) / 2
        parts.append(f'<text x="14" y="{middle:.1f}" font-size="11" text-anchor="middle" '
                     f'transform="rotate(-90 14 {middle:.1f})">{escape(y_label)}</text>')
        return "".join(parts)


def _nice_step(raw: float) -> float:
    exponent = math.floor(math.log10(raw))
    fraction = raw / 10 ** exponent
    nice = 1 if fraction <= 1 else 2 if fraction <= 2 else 5 if fraction <= 5 else 10
    return nice * 10 ** exponent


#: width of one character of a bold 13 px title, generous for any sans-serif
TITLE_CHAR_WIDTH = 7.8


def _svg(svg_id: str, title: str, width: int, height: int, parts: list[str]) -> str:
    room = width - 16
    # a long title (device / runtime / delegate: metric) is squeezed into the plot's width, never cut off
    fit = f' textLength="{room}" lengthAdjust="spacingAndGlyphs"' if len(title) * TITLE_CHAR_WIDTH > room else ""
    return (f'<svg id="{escape(svg_id)}" class="plot" xmlns="http://www.w3.org/2000/svg" role="img" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" aria-label="{escape(title)}">'
            f'<title>{escape(title)}</title><text x="8" y="18" font-size="13" font-weight="bold"{fit}>'
            f'{escape(title)}</text>{"".join(parts)}</svg>')


def _text(x: float, y: float, text: str, *, size: int = 11, anchor: str = "start", color: str = "#222") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{color}">'
            f'{escape(text)}</text>')


def _line(x1: float, y1: float, x2: float, y2: float, *, color: str = "#444") -> str:
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{color}" stroke-width="1"/>'


def _marker(kind: str, cx: float, cy: float, color: str, tooltip: str, *, point: int | None = None) -> str:
    """A marker; ``point``: its index in the plot, which its label's ``data-label-for`` names."""
    tip = f"<title>{escape(tooltip)}</title>"
    data = "" if point is None else f' data-point="{point}"'
    if kind == "square":
        return f'<rect{data} x="{cx - 5:.1f}" y="{cy - 5:.1f}" width="10" height="10" fill="{color}">{tip}</rect>'
    return f'<circle{data} cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="{color}">{tip}</circle>'


def _legend(entries: list[tuple[str, str, str]], x: float, y: float) -> str:
    parts = []
    for index, (name, color, kind) in enumerate(entries):
        row = y + index * 16
        if kind == "line":
            parts.append(_line(x, row, x + 14, row, color=color).replace('stroke-width="1"', 'stroke-width="3"'))
        else:
            parts.append(_marker(kind, x + 7, row, color, name))
        parts.append(_text(x + 20, row + 4, _shorten(name, 24), size=11))
    return "".join(parts)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
