"""The "Per layer" section of report.html: each int8 file's layers ranked by the SQNR they lose."""

from __future__ import annotations

import textwrap
from html import escape

from edgekit.report.plots import bar_svg
from edgekit.report.sensitivity_html import sensitivity_blocks

WORST_COLOR, OTHER_COLOR = "#c0392b", "#2e86c1"
SHOWN_WORST = 3


def ranked_layers(entry: dict) -> list[dict]:
    """An entry's layers, the one that loses the most SQNR itself first."""
    return sorted(entry.get("layers", []), key=lambda layer: -layer.get("sqnr_drop_db", 0.0))


def per_layer_section(report: dict) -> str:
    entries = report.get("per_layer") or []
    time_blocks = time_per_layer_blocks(report)
    if not entries:
        return ('<section><h2>Per layer</h2><p class="absent">Per-layer error: not measured in this build.'
                f"</p>{sensitivity_blocks(report)}{time_blocks}</section>")
    blocks = [_entry_block(index, entry) for index, entry in enumerate(entries)]
    intro = ("<p>Each conv/FC output (BatchNorm and activation folded, as the runtime's kernel writes it), read "
             "inside the runtime and compared with the float model's on the same test images. SQNR is "
             "cumulative; layers are ranked by the SQNR they lose themselves (their input's SQNR minus theirs), "
             "worst first.</p>")
    return f"<section><h2>Per layer</h2>{intro}{''.join(blocks)}{sensitivity_blocks(report)}{time_blocks}</section>"


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


# --- time per layer (host, onnxruntime's profiler) and instructions per kernel (emulated) ----------------

SHOWN_KERNELS = 10


def time_per_layer_blocks(report: dict) -> str:
    """Host time per layer, float vs int8, and emulated instructions per kernel, float vs int8."""
    blocks = [_per_op_block(entry) for entry in report.get("per_op") or []]
    blocks += [_kernel_block(report, profile) for profile in int8_kernel_profiles(report)]
    return "".join(blocks)


def _per_op_block(entry: dict) -> str:
    from edgekit.report.html import _table

    unit = entry.get("unit", "ms")
    how = ("real; profiler on" if entry["obtained"] == "real"
           else f"{entry['obtained']}: the simulator's own count, not a device latency")
    threads = f", {entry['threads']} thread(s)" if entry.get("threads") else ""
    title = (f"{'Time' if unit == 'ms' else 'Cycles'} per layer: {entry['artifact']} vs {entry['float_artifact']}, "
             f"{entry['runtime']} on {entry['device']}{threads}, {entry['runs']} run(s) ({how})")
    rows = [[row["layer"], row.get("int8_node_op") or "", _figure(row.get("float"), unit),
             _figure(row.get("int8"), unit), _ratio(row.get("int8"), row.get("float"))] for row in entry["layers"]]
    rows += [[f"({row['op_type']})", "", _figure(row.get("float"), unit), _figure(row.get("int8"), unit),
              _ratio(row.get("int8"), row.get("float"))] for row in entry.get("other_ops", [])]
    rows.append(["total", "", _figure(entry.get("float_total"), unit), _figure(entry.get("int8_total"), unit),
                 _ratio(entry.get("int8_total"), entry.get("float_total"))])
    table = _table(["layer", "int8 node", f"float {unit}", f"int8 {unit}", "int8/float"], rows)
    return f"<h3>{escape(title)}</h3>{table}"


def int8_kernel_profiles(report: dict) -> list[dict]:
    """Profiles of int8 files with instructions per kernel (emulated devices)."""
    return [profile for profile in report.get("profiles", [])
            if profile.get("kernels") and profile.get("float_artifact")]


def _kernel_block(report: dict, profile: dict) -> str:
    from edgekit.report.summary import float_profile_for

    float_profile = float_profile_for(report, profile) or {}
    title = (f"Instructions per kernel: {profile['artifact']} vs {profile['float_artifact']}, {profile['runtime']} "
             f"on {profile['device']} ({profile['obtained']}: guest instructions per inference, not a time)")
    tables = [_kernel_table(label, kernels) for label, kernels in
              (("int8", profile["kernels"]), ("float", float_profile.get("kernels"))) if kernels]
    return f"<h3>{escape(title)}</h3>" + "".join(tables)


def _kernel_table(label: str, kernels: dict) -> str:
    from edgekit.report.html import _table

    total = kernels["total"] or 1
    rows = [[row["symbol"], row["library"], f"{row['instructions']:,}", f"{100.0 * row['instructions'] / total:.1f}%",
             ", ".join(f"{kind} {count:,}" for kind, count in (row.get("macs") or {}).items())]
            for row in kernels["kernels"][:SHOWN_KERNELS]]
    rows.append(["total", "", f"{kernels['total']:,}", "100%", ""])
    return _table([f"{label} kernel", "library", "instructions", "share", "multiply-accumulate instructions"], rows)


def _figure(value, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if unit == "ms" else f"{value:,.0f}"


def _ratio(int8, float_) -> str:
    return f"{int8 / float_:.2f}" if int8 is not None and float_ else "-"


def costliest_kernel_lines(report: dict, width: int = 120) -> list[str]:
    """For the terminal summary: the three kernels each int8 file spends the most emulated instructions in;
    where no device counted kernels, the three layers with the most int8 time on the host."""
    lines = []
    for profile in int8_kernel_profiles(report):
        total = profile["kernels"]["total"] or 1
        named = [row for row in profile["kernels"]["kernels"] if row["symbol"] != "(other)"][:SHOWN_WORST]
        costly = ", ".join(f"{row['symbol']} ({row['instructions'] / 1e6:.2f} M, "
                           f"{100.0 * row['instructions'] / total:.0f}%)" for row in named)
        lines += textwrap.wrap(f"costliest kernels {profile['artifact']} ({profile['device']}, {profile['runtime']}, "
                               f"{profile['obtained']} instructions): {costly}", width=width, subsequent_indent="  ",
                               break_on_hyphens=False)
    if lines:
        return lines
    for entry in report.get("per_op") or []:
        unit = entry.get("unit", "ms")
        layers = sorted(entry["layers"], key=lambda row: -(row.get("int8") or 0))[:SHOWN_WORST]
        costly = ", ".join(f"{row['layer']} ({_figure(row.get('int8'), unit)} {unit} vs float "
                           f"{_figure(row.get('float'), unit)})" for row in layers)
        how = "real, profiler on" if entry["obtained"] == "real" else f"{entry['obtained']}, not a latency"
        lines += textwrap.wrap(f"costliest layers {entry['artifact']} ({entry['device']} {entry['runtime']}, {how}): "
                               f"{costly}", width=width, subsequent_indent="  ", break_on_hyphens=False)
    return lines


def per_op_growth(report: dict, artifact: str, runtime: str, top: int = 3) -> list[tuple[str, float]]:
    """The layers (and other op types, in parentheses) whose host time grew most from the float file to
    ``artifact`` in ``runtime``, from ``per_op``: [(name, int8 ms - float ms)], growth only."""
    from edgekit.report.summary import artifact_key

    for entry in report.get("per_op") or []:
        if (entry["runtime"], entry.get("unit")) != (runtime, "ms"):
            continue
        if artifact_key(report, entry["artifact"]) != artifact_key(report, artifact):
            continue
        rows = [(row["layer"], row) for row in entry["layers"]]
        rows += [(f"({row['op_type']})", row) for row in entry.get("other_ops", [])]
        growth = sorted(((name, (row.get("int8") or 0.0) - (row.get("float") or 0.0)) for name, row in rows),
                        key=lambda item: -item[1])
        return [(name, delta) for name, delta in growth[:top] if delta > 0]
    return []
