"""Render ``report.json`` as one self-contained ``report.html``: tables and inline SVG plots, no JavaScript.

Every number says where it came from (device, runtime, delegate, threads, real / emulated / simulated /
estimated) and what it is (its metric and unit). Only a latency measured on the real device is shown as
a latency: an emulated or simulated row shows its own metric (instructions per inference, ...). A section with no data says so in one line. The page's Content-Security-Policy forbids any
external load, so a stray asset reference would show up as a console error (the rendering test looks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import escape
from pathlib import Path

from edgekit.artifacts import write_atomically
from edgekit.report import plots
from edgekit.report.schema import upgrade_report
from edgekit.report.summary import (
    accuracy_for, artifact_format, artifact_key, cost_text, devices, find_artifact, incomplete_text, is_device_latency,
    kernel_text, metric_label, ratio_text,
)

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:1.8em;border-bottom:1px solid #ddd}table{border-collapse:collapse;margin:.6em 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;font-size:13px}td.n{text-align:right;white-space:nowrap}
.scroll{overflow-x:auto}td.n{font-variant-numeric:tabular-nums}td.na{color:#777;text-align:center}
th{background:#f4f4f4}.absent{color:#777;font-style:italic}.fail{color:#b00020;font-weight:bold}
.note{color:#555;font-size:.92em}svg.plot{display:block;margin:.8em 0;max-width:100%;height:auto}
"""
CSP = "default-src 'none'; style-src 'unsafe-inline'"
TOP_NODES = 12


def write_html(report: dict, path: Path) -> Path:
    """Write ``report`` as a self-contained HTML page at ``path`` (atomically); return the path."""
    page = render_html(report)
    return write_atomically(path, lambda tmp: tmp.write_text(page, encoding="utf-8"))


def render_html(report: dict) -> str:
    report = upgrade_report(report)
    name = report.get("recipe", {}).get("name") or "build"
    sections = [_model_card(report), _accuracy_section(report), _kernel_section(report), _size_section(report),
                _latency_section(report), _training_section(report), _stages_section(report)]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>edgekit report: {escape(name)}</title><style>{STYLE}</style></head><body>'
            f'<h1>edgekit report: {escape(name)}</h1>{"".join(sections)}'
            f'<p class="note">Rendered from report.json (schema version {escape(str(report.get("schema_version")))}) '
            f'by edgekit {escape(str(report.get("edgekit_version")))}.</p></body></html>\n')


# --- sections -----------------------------------------------------------------------------------


def _model_card(report: dict) -> str:
    model, recipe = report["model"], report.get("recipe", {})
    training, qat = report.get("training"), report.get("qat")
    rows = [("architecture", model["arch"]), ("width multiplier α", model["alpha"]),
            ("resolution ρ", f"{model['resolution']}×{model['resolution']}"), ("classes", model["num_classes"]),
            ("mult-adds", f"{model['macs']:,} ({model['macs'] / 1e6:.2f} M)"),
            ("parameters", f"{model['params']:,} ({model['params'] / 1e6:.3f} M)")]
    if training:
        settings = recipe.get("train", {})
        rows += [("training data", f"{training['dataset']}, {training['images']:,} images"),
                 ("training", f"{training['epochs']} epochs, {training['steps']} steps, batch "
                              f"{settings.get('batch_size', '?')}, {settings.get('optimizer', '?')} lr "
                              f"{settings.get('lr', '?')} ({settings.get('schedule', '?')}), on "
                              f"{training['device']} with {training['threads']} threads, {training['seconds']} s")]
    else:
        rows.append(("training data", recipe.get("data", {}).get("dataset", "not recorded")))
    rows.append(("quantisation", _quantisation_text(recipe.get("quantize", {}), qat)))
    rows.append(("edgekit", f"{report.get('edgekit_version')} (report schema {report.get('schema_version')})"))
    rows += [(name, version) for name, version in report.get("environment", {}).items()]
    if not report.get("environment"):
        rows.append(("dependency versions", "not recorded in this report"))
    table = _table(["", ""], [[key, str(value)] for key, value in rows], header=False)
    return f"<h2>Model card</h2>{table}"


def _quantisation_text(settings: dict, qat: dict | None) -> str:
    method = settings.get("method", "?")
    text = (f"{method}, {settings.get('weights', '?')} weights, {settings.get('activations', '?')} activations, "
            f"{settings.get('calibration_batches', '?')} calibration batches")
    if method == "qat":
        text += f", QAT {settings.get('epochs', '?')} epochs at lr {settings.get('lr', '?')}"
    if qat:
        text += f"; QAT backend {qat['backend']}, {len(qat['history'])} logged steps"
    elif method != "none":
        text += "; QAT/PTQ not run in this build"
    return text


def _accuracy_section(report: dict) -> str:
    entries = report.get("accuracy", [])
    if not entries:
        return _section("Accuracy per artifact and runtime", _absent("accuracy"))
    rows = []
    for entry in entries:
        agreement = entry.get("agreement")
        rows.append([entry["artifact"], artifact_format(report, entry["artifact"]), entry["precision"],
                     entry["method"], entry["runtime"], entry["device"], entry["threads"], entry["dataset"],
                     entry["samples"], _num(entry["top1"], 2), _num(entry["top5"], 2),
                     _agreement_text(agreement) if agreement else "-"])
    headers = ["artifact", "format", "precision", "method", "runtime", "device", "threads", "dataset",
               "samples", "top-1 %", "top-5 %", "agreement"]
    note = '<p class="note">Each row was measured in the named runtime on the named device and thread count.</p>'
    return _section("Accuracy per artifact and runtime", _table(headers, rows) + note)


def _agreement_text(agreement: dict) -> str:
    # top1_agreement is the fraction of images whose argmax matches (evaluate_file)
    return (f"top-1 agrees with {agreement['reference']} on {100 * agreement['top1_agreement']:.1f}% of "
            f"{agreement['samples']} images; max diff {agreement['max_diff']:.3g} {agreement['unit']}")


def _kernel_section(report: dict) -> str:
    checks = report.get("int8_kernels", [])
    if not checks:
        return _section("int8 kernel check", _absent("the int8 kernel check"))
    rows = [[check["artifact"], check["runtime"], check["int8"], check["float"], ", ".join(check["float_ops"]) or "-",
             _Cell(kernel_text(check), "" if check["ok"] else "fail")] for check in checks]
    return _section("int8 kernel check", _table(
        ["artifact", "runtime", "int8 kernels", "float kernels", "float ops", "result"], rows))


def _size_section(report: dict) -> str:
    artifacts = report.get("artifacts", [])
    if not artifacts:
        return _section("Size per artifact", _absent("artifact sizes"))
    rows = [[a["name"], a["path"], a["format"], a["precision"], a["method"], a.get("io", "-"),
             _Cell(f"{a['bytes']:,}", "n"), _num(a["bytes"] / 1e6, 3), a["sha256"][:12]] for a in artifacts]
    bars = [(f"{a['name']} ({a['precision']}, {a['method']})", a["bytes"] / 1e6,
             plots.INT8_COLOR if a["precision"] == "int8" else plots.FLOAT_COLOR) for a in artifacts]
    plot = plots.bar_svg("plot-size", "Size per artifact (MB, file on disk)", bars, "MB on disk")
    table = _table(["artifact", "path", "format", "precision", "method", "I/O", "bytes", "MB", "sha256"], rows)
    return _section("Size per artifact", table + plot)


def _latency_section(report: dict) -> str:
    if not report.get("profiles"):
        return _section("Latency per device", _absent("latency"))
    return _section("Latency per device", "".join(_device_block(report, device) for device in devices(report)))


def _device_block(report: dict, device: str) -> str:
    profiles = [p for p in report["profiles"] if p["device"] == device]
    kinds = sorted({p["obtained"] for p in profiles})
    rows = [_latency_row(report, profile) for profile in profiles]
    headers = ["artifact", "runtime", "delegate", "precision", "threads", "obtained", "p50 ms", "p90 ms", "p99 ms",
               "mean ± std ms", "min ms", "measured", "runs", "int8/float", "init ms", "1st run ms", "peak RSS MB"]
    host = profiles[0].get("host") or {}
    host_text = ", ".join(f"{key}={value}" for key, value in host.items()) or "not recorded"
    parts = [f"<h3>{escape(device)} ({escape(', '.join(kinds))})</h3>", _table(headers, rows),
             f'<p class="note">host: {escape(host_text)}</p>']
    if any(not is_device_latency(p) for p in profiles):
        parts.append('<p class="note">Only latencies measured on the real device fill the ms columns. Emulated and '
                     'simulated runs report their own metric (instructions per inference, ...); their wall-clock '
                     'times are not device latencies and are not shown.</p>')
    parts += [note for note in dict.fromkeys(_note_text(p) for p in profiles) if note]
    for group in _measurement_groups(profiles):
        parts.append(_accuracy_latency_plot(report, device, group))
    parts += [_per_node_plot(profile, index) for index, profile in enumerate(profiles) if profile.get("per_node")]
    return "".join(parts)


def _measurement_groups(profiles: list[dict]) -> list[list[dict]]:
    """Profiles that measured the same metric the same way: one accuracy plot each."""
    groups: dict[tuple, list[dict]] = {}
    for profile in profiles:
        groups.setdefault((profile["metric"], profile["unit"], profile["obtained"]), []).append(profile)
    return list(groups.values())


def _note_text(profile: dict) -> str:
    if not profile.get("note"):
        return ""
    return (f'<p class="note">{escape(profile["artifact"])} ({escape(profile["runtime"])}/'
            f'{escape(str(profile["delegate"]))}): {escape(profile["note"])}</p>')


def _latency_row(report: dict, profile: dict) -> list:
    obtained = profile["obtained"]
    head = [profile["artifact"], profile["runtime"], profile["delegate"] or "not recorded",
            _precision_of(report, profile), profile["threads"], obtained]
    tail = [_Cell(_measured_text(profile), "n"), profile["runs"], _ratio_cell(profile)]
    rss = "-" if profile.get("peak_rss_mb") is None else _num(profile["peak_rss_mb"], 1)
    if not is_device_latency(profile):  # no device latency: one grey cell instead of the ms columns
        grey = _Cell(f"not a latency ({obtained}): see {metric_label(profile['metric'])}", "na", 5)
        if obtained != "real":  # and the emulator's (or simulator host's) memory is not the device's
            return [*head, grey, *tail, _Cell("n/a", "na", 3)]
        return [*head, grey, *tail, *_wall_times(profile), rss]
    latency = profile["distribution"] or {}

    def ms(value):
        return "-" if value is None else _num(value, 3)

    spread = (f"{latency['mean']:.3f} ± {latency['std']:.3f}"
              if latency.get("mean") is not None and latency.get("std") is not None else "-")
    return [*head, *(ms(latency.get(k)) for k in ("p50", "p90", "p99")), _Cell(spread, "n"), ms(latency.get("min")),
            *tail, *_wall_times(profile), rss]


def _wall_times(profile: dict) -> list:
    return ["-" if profile.get(key) is None else _num(profile[key], 3) for key in ("init_ms", "first_inference_ms")]


def _measured_text(profile: dict) -> str:
    """The entry's value with its metric and unit, e.g. '2,460,000 instructions' or 'latency p50 0.700 ms'."""
    value = profile["value"]
    if value is None:
        return f"{metric_label(profile['metric'])}: not obtained"
    number = f"{value:,}" if float(value).is_integer() else f"{value:,.3f}"
    statistic = " p50" if profile["distribution"] else ""
    if profile["metric"] == "instructions":
        return f"{number} instructions per inference"
    return f"{metric_label(profile['metric'])}{statistic} {number} {profile['unit']}"


def _ratio_cell(profile: dict) -> str:
    if profile.get("ratio_to_float") is None:
        return "-"
    return f"{ratio_text(profile)} (vs {profile.get('float_artifact') or 'float'})"


def _accuracy_latency_plot(report: dict, device: str, profiles: list[dict]) -> str:
    """Top-1 against the value of ``profiles`` (all of one metric, obtained one way)."""
    float_series = plots.Series("float32", plots.FLOAT_COLOR)
    int8_series = plots.Series("int8", plots.INT8_COLOR, marker="square")
    for profile in profiles:
        entry = accuracy_for(report, profile["artifact"], profile["runtime"])
        if entry is None or profile["value"] is None:
            continue
        series = int8_series if entry["precision"] == "int8" else float_series
        series.points.append((profile["value"], entry["top1"]))
        series.labels.append(f"{artifact_key(report, profile['artifact'])} {profile['runtime']}/{profile['delegate']} "
                             f"{profile['threads']}t {entry['method']}")
    series = [s for s in (float_series, int8_series) if s.points]
    first = profiles[0]
    what = metric_label(first["metric"])
    if not series:
        return _absent(f"accuracy vs {what} on {device} (no profiled artifact has an accuracy entry)")
    if is_device_latency(first):
        x_label, title, svg_id = "p50 latency, ms (real device)", f"Top-1 vs latency on {device}", device
    else:
        per = " per inference" if first["metric"] in ("instructions", "cycles") else ""
        x_label = f"{what}{per}, {first['unit']} ({first['obtained']}: not a latency)"
        if first["metric"] == "instructions":
            x_label = f"instructions per inference ({first['obtained']}: not a latency)"
        title, svg_id = f"Top-1 vs {what} on {device} ({first['obtained']})", f"{device}-{first['metric']}"
    return plots.scatter_svg(f"plot-accuracy-latency-{_slug(svg_id)}", title, series, x_label, "top-1 %")


def _per_node_plot(profile: dict, index: int) -> str:
    """Per-node times, which only real devices give (onnxruntime's node profile, benchmark_model over adb)."""
    nodes = sorted((n for n in profile["per_node"] if n.get("ms") is not None), key=lambda n: -n["ms"])
    if not is_device_latency(profile) or not nodes:
        return _absent(f"per-layer ms per inference for {profile['artifact']} on {profile['device']}")
    bars = [(f"{n['name']}" + (f" ({n['op_type']})" if n.get("op_type") else ""), n["ms"], plots.PALETTE[2])
            for n in nodes[:TOP_NODES]]
    title = (f"Top layers of {profile['artifact']} on {profile['device']} ({profile['runtime']}/"
             f"{profile['delegate']}, {profile['threads']} threads, {profile['obtained']})")
    return plots.bar_svg(f"plot-per-node-{_slug(profile['device'])}-{index}", title, bars, "ms per inference")


def _training_section(report: dict) -> str:
    series = []
    for key, name, color in (("training", "float training", plots.FLOAT_COLOR), ("qat", "QAT", plots.INT8_COLOR)):
        history = (report.get(key) or {}).get("history") or []
        if history:
            series.append(plots.Series(name, color, [(p["step"], p["loss"]) for p in history]))
    if not series:
        return _section("Training and QAT loss", _absent("training history"))
    plot = plots.line_svg("plot-loss", "Training and QAT loss per step", series, "step (within its stage)", "loss")
    return _section("Training and QAT loss", plot)


def _stages_section(report: dict) -> str:
    rows = [[s["name"], s["status"], _num(s["seconds"], 1), s["key"][:12]] for s in report.get("stages", [])]
    body = _table(["stage", "status", "seconds", "cache key"], rows) if rows else _absent("stages")
    if not report["build"]["complete"]:
        body = f'<p class="fail">{escape(incomplete_text(report["build"]))}</p>' + body
    return _section("Build stages", body)


# --- small helpers ------------------------------------------------------------------------------


def _section(title: str, body: str) -> str:
    return f"<section><h2>{escape(title)}</h2>{body}</section>"


def _absent(what: str) -> str:
    return f'<p class="absent">{escape(what[0].upper() + what[1:])}: not measured in this build.</p>'


def _table(headers: list[str], rows: list[list], *, header: bool = True) -> str:
    head = "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in headers) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(_cell(value) for value in row) + "</tr>" for row in rows)
    return f'<div class="scroll"><table>{head}{body}</table></div>'


@dataclass
class _Cell:
    """A formatted table cell: its text, a CSS class (n: number, na: not applicable, fail) and its span."""

    text: str
    css: str = ""
    columns: int = 1


def _cell(value) -> str:
    if not isinstance(value, _Cell):
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = _Cell(str(value), "n" if numeric else "")
    css = f' class="{value.css}"' if value.css else ""
    span = f' colspan="{value.columns}"' if value.columns > 1 else ""
    return f"<td{css}{span}>{escape(value.text)}</td>"


def _num(value: float, digits: int) -> _Cell:
    return _Cell(f"{float(value):.{digits}f}", "n")


def _precision_of(report: dict, profile: dict) -> str:
    artifact = find_artifact(report, profile["artifact"])
    entry = accuracy_for(report, profile["artifact"], profile["runtime"])
    described = artifact or entry
    return f"{described['precision']}, {described['method']}" if described else "?"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "device"
