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
from edgekit.report.estimate_html import estimate_block
from edgekit.report.per_layer_html import per_layer_section
from edgekit.report.schema import upgrade_report
from edgekit.report.summary import (
    accuracy_for, artifact_format, artifact_key, cost_text, devices, find_artifact, incomplete_text, int8_slowdowns,
    is_device_latency, kernel_check_for, kernel_text, metric_label, profiles_for, ratio_text, slowdown_reason,
    slowdown_text,
)

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:1.8em;border-bottom:1px solid #ddd}table{border-collapse:collapse;margin:.6em 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;font-size:13px}td.n{text-align:right;white-space:nowrap}
.scroll{overflow-x:auto}td.n{font-variant-numeric:tabular-nums}td.na{color:#777;text-align:center}
th{background:#f4f4f4}.absent{color:#777;font-style:italic}.fail{color:#b00020;font-weight:bold}
.note{color:#555;font-size:.92em}svg.plot{display:block;margin:.8em 0;max-width:100%;height:auto}
.good{background:#dff3e4}.warn{background:#fff1c7}.bad{background:#fbdfe1}
#headline{border:3px solid #888;border-radius:6px;padding:.2em 1em;margin:1em 0}#headline.overall-good{border-color:#2e9e5b}
#headline.overall-warn{border-color:#c28a1f}#headline.overall-bad{border-color:#b00020}#headline h2{margin-top:.4em}
#headline p.verdict{font-size:1.15em;margin:.3em 0}#headline p.verdict strong{padding:0 .3em}
pre.recipe{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:12px}
"""
#: the headline's colours, best to worst
COLOURS = ("good", "warn", "bad")
COLOUR_WORDS = {"good": "GREEN", "warn": "AMBER", "bad": "RED"}
#: int8 size as a share of its float twin: green up to GOOD_SIZE_SHARE, amber up to WARN_SIZE_SHARE
GOOD_SIZE_SHARE, WARN_SIZE_SHARE = 0.35, 0.6
#: int8/float cost ratio: green below GOOD_RATIO, amber up to 1 (hardly faster), red above 1 (slower)
GOOD_RATIO = 0.9
#: where the on-device script and the adb target read each machine fact
FACT_SOURCES = {
    "script": {"machine": "platform.machine()", "cpu": "/proc/cpuinfo", "cores": "os.cpu_count()",
               "governor": "cpu0 scaling_governor in sysfs"},
    "adb": {"machine": "uname -m", "cpu": "getprop ro.soc.model or ro.product.model", "cores": "nproc",
            "governor": "cpu0 scaling_governor in sysfs"},
}
CSP = "default-src 'none'; style-src 'unsafe-inline'"
TOP_NODES = 12


def write_html(report: dict, path: Path) -> Path:
    """Write ``report`` as a self-contained HTML page at ``path`` (atomically); return the path. When the
    recipe names a gate baseline, the gate runs on the report.json beside ``path`` for the headline."""
    page = render_html(report, gate=gate_verdict(report, Path(path).with_name("report.json")))
    return write_atomically(path, lambda tmp: tmp.write_text(page, encoding="utf-8"))


def gate_verdict(report: dict, report_path: Path) -> tuple[str, str] | None:
    """(colour, text) of ``edgekit gate`` on ``report_path`` when the recipe sets ``gate.baseline``, else None."""
    from edgekit.errors import EdgekitError
    from edgekit.gate import run_gate

    baseline = (report.get("recipe", {}).get("gate") or {}).get("baseline")
    if not baseline:
        return None
    if not report_path.is_file():
        return "warn", f"gate vs baseline {baseline}: not run ({report_path.name} not written)"
    try:
        result = run_gate(report_path)
    except EdgekitError as exc:
        return "warn", f"gate vs baseline {baseline}: not run ({exc})"
    if result.passed:
        return "good", f"gate vs baseline {baseline}: passed ({len(result.checks)} checks)"
    failed = result.failures()
    return "bad", f"gate vs baseline {baseline}: FAILED {len(failed)} of {len(result.checks)} checks: {failed[0].line()}"


def render_html(report: dict, *, gate: tuple[str, str] | None = None) -> str:
    """The page; ``gate``: the (colour, text) verdict of the gate against a baseline, shown in the headline."""
    report = upgrade_report(report)
    name = report.get("recipe", {}).get("name") or "build"
    sections = [_headline(report, gate), _build_section(report), _model_card(report), _accuracy_section(report), _kernel_section(report), per_layer_section(report), _size_section(report),
                _latency_section(report), _training_section(report), _stages_section(report)]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>edgekit report: {escape(name)}</title><style>{STYLE}</style></head><body>'
            f'<h1>edgekit report: {escape(name)}</h1>{"".join(sections)}'
            f'<p class="note">Rendered from report.json (schema version {escape(str(report.get("schema_version")))}) '
            f'by edgekit {escape(str(report.get("edgekit_version")))}.</p></body></html>\n')


# --- sections -----------------------------------------------------------------------------------


def _headline(report: dict, gate: tuple[str, str] | None) -> str:
    """Per int8 file and runtime: top-1 change vs float, int8/float cost per device, size share, kernel
    check; each cell green, amber or red, the box the worst of them (and of the gate's verdict)."""
    columns = list(dict.fromkeys((p["device"], p["threads"]) for p in report.get("profiles", [])))
    several_threads = len({threads for _, threads in columns}) > 1
    headers = ["int8 file", "runtime", "top-1 change vs float", *(
        f"int8/float {_metric_word(report, device)} on {device}" + (f" ({threads}t)" if several_threads else "")
        for device, threads in columns), "size vs float", "int8 kernels"]
    rows = [[entry["artifact"], entry["runtime"], _top1_cell(report, entry),
             *(_ratio_headline_cell(profiles_for(report, entry["artifact"], entry["runtime"], device, threads))
               for device, threads in columns),
             _size_share_cell(report, entry["artifact"]), _kernel_headline_cell(report, entry)]
            for entry in report.get("accuracy", []) if entry["precision"] == "int8"]
    colours = [cell.css for row in rows for cell in row if isinstance(cell, _Cell) and cell.css in COLOURS]
    if gate:
        colours.append(gate[0])
    if not rows:
        colours.append("warn")
    overall = max(colours, key=COLOURS.index) if colours else "warn"
    parts = [f'<p class="verdict"><strong class="{overall}">{COLOUR_WORDS[overall]}</strong> '
             f'{escape(_verdict_text(report, rows, overall))}</p>']
    if rows:
        parts.append(_table(headers, rows))
    slow = int8_slowdowns(report)
    if slow:
        items = "".join(f"<li><strong>int8 slower than float</strong>: {escape(slowdown_text(report, profile))}. "
                        f"Likely reason: {escape(slowdown_reason(report, profile))}.</li>" for profile in slow)
        parts.append(f"<ul>{items}</ul>")
    if gate:
        parts.append(f'<p class="{gate[0]}">{escape(gate[1])}</p>')
    elif (report.get("recipe", {}).get("gate") or {}).get("baseline") is None:
        parts.append('<p class="note">No gate baseline in the recipe (gate.baseline): no verdict against a baseline.</p>')
    parts.append(f'<p class="note">Green: top-1 drop at most half of gate.max_int8_drop '
                 f'({_max_int8_drop(report):g} points), int8/float cost below {GOOD_RATIO}, size at most '
                 f'{GOOD_SIZE_SHARE:.0%} of float, int8 kernels only. Amber: drop within max_int8_drop, cost ratio '
                 f'{GOOD_RATIO}-1, size at most {WARN_SIZE_SHARE:.0%}, or not measured. Red: beyond those; an int8 '
                 f'file slower than float is red.</p>')
    return f'<section id="headline" class="overall-{overall}"><h2>Headline</h2>{"".join(parts)}</section>'


def _verdict_text(report: dict, rows: list, overall: str) -> str:
    if not rows:
        return "no int8 file was measured in this build"
    if not report["build"]["complete"]:
        return incomplete_text(report["build"])
    if overall == "good":
        return "every int8 file keeps its accuracy, is smaller and faster than float, and runs int8 kernels"
    slow = int8_slowdowns(report)
    if slow:
        return f"{len(slow)} int8 run(s) slower than float (below); see the red cells"
    return "see the amber and red cells below"


def _max_int8_drop(report: dict) -> float:
    from edgekit.gate import gate_settings

    try:
        return gate_settings(report, {}, "report")["max_int8_drop"]
    except Exception:  # a report whose gate section this edgekit cannot read: the recipe default
        from edgekit.recipe.schema import GateSection

        return GateSection().max_int8_drop


def _top1_cell(report: dict, entry: dict) -> "_Cell":
    from edgekit.gate.checks import int8_drop_checks

    limit = _max_int8_drop(report)
    name = f"{entry['runtime']} {entry['artifact']}"
    check = next((c for c in int8_drop_checks(report, limit) if c.name == name), None)
    if check is None or check.measured is None:
        return _Cell("no float entry to compare", "warn")
    drop = check.measured
    colour = "good" if drop <= limit / 2 else "warn" if drop <= limit + 1e-9 else "bad"
    return _Cell(f"{0.0 - drop:+.2f} points", colour)  # 0.0 - 0.0 is +0.00, never -0.00


def _metric_word(report: dict, device: str) -> str:
    metrics = {p["metric"] for p in report.get("profiles", []) if p["device"] == device}
    return metric_label(metrics.pop()) if len(metrics) == 1 else "cost"


def _ratio_headline_cell(profiles: list[dict]) -> "_Cell":
    ratios = [(p["delegate"], p["ratio_to_float"]) for p in profiles if p.get("ratio_to_float") is not None]
    if not ratios:
        return _Cell("-", "na")
    worst = max(ratio for _, ratio in ratios)
    colour = "bad" if worst > 1 else "warn" if worst >= GOOD_RATIO else "good"
    texts = [f"{ratio:.2f}×" + (" SLOWER" if ratio > 1 else "") for _, ratio in ratios]
    if len(ratios) > 1:
        texts = [f"{delegate}: {text}" for (delegate, _), text in zip(ratios, texts)]
    return _Cell("; ".join(texts), colour)


def _size_share_cell(report: dict, ref: str) -> "_Cell":
    artifact = find_artifact(report, ref)
    twin = next((a for a in report.get("artifacts", []) if artifact and a["precision"] == "float32"
                 and a["format"] == artifact["format"]), None)
    if not artifact or not twin or not twin["bytes"]:
        return _Cell("-", "na")
    share = artifact["bytes"] / twin["bytes"]
    colour = "good" if share <= GOOD_SIZE_SHARE else "warn" if share <= WARN_SIZE_SHARE else "bad"
    return _Cell(f"{share:.0%} of {twin['name']}", colour)


def _kernel_headline_cell(report: dict, entry: dict) -> "_Cell":
    check = kernel_check_for(report, entry["artifact"], entry["runtime"])
    if check is None:
        return _Cell("not checked", "warn")
    return _Cell(kernel_text(check), "good" if check["ok"] else "bad")


def _build_section(report: dict) -> str:
    """When the build started, its command line, its recipe (YAML, folded)."""
    import shlex

    import yaml

    build = report["build"]
    started = build.get("started") or "not recorded in this report"
    command = shlex.join(build["command"]) if build.get("command") else "not recorded in this report"
    rows = [["started (UTC)", started], ["command", command],
            ["stages", f"{len(build['stages_finished'])} of {len(build['stages_planned'])} finished"
                       + ("" if build["complete"] else " (incomplete)")]]
    recipe = yaml.safe_dump(report.get("recipe", {}), sort_keys=False, allow_unicode=True)
    folded = (f'<details><summary>Recipe (YAML, as resolved with every default)</summary>'
              f'<pre class="recipe">{escape(recipe)}</pre></details>')
    return _section("Build", _table(["", ""], rows, header=False) + folded)


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
        rows += [(f"{name} processes", _processes_text(section["distributed"]))
                 for name, section in (("training", training), ("QAT", qat))
                 if section and section.get("distributed", {}).get("world_size", 1) > 1]
    else:
        rows.append(("training data", recipe.get("data", {}).get("dataset", "not recorded")))
    rows.append(("quantisation", _quantisation_text(recipe.get("quantize", {}), qat)))
    rows.append(("edgekit", f"{report.get('edgekit_version')} (report schema {report.get('schema_version')})"))
    rows += [(name, version) for name, version in report.get("environment", {}).items()]
    if not report.get("environment"):
        rows.append(("dependency versions", "not recorded in this report"))
    table = _table(["", ""], [[key, str(value)] for key, value in rows], header=False)
    return f"<h2>Model card</h2>{table}"


def _processes_text(distributed: dict) -> str:
    """A data-parallel run: world size, nodes, backend and each process's share of the global batch."""
    nodes = distributed.get("nodes", 1)
    return (f"{distributed['world_size']} (DistributedDataParallel over {distributed['backend']}"
            + (f", {nodes} nodes" if nodes > 1 else "")
            + f"), {distributed['per_process_batch_size']} images per process and step; threads are per process")


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
    plot = plots.bar_svg("plot-size", "Size per artifact (MB, file on disk)", bars, "MB on disk",
                         value_format=lambda value: f"{value:.3f}")
    table = _table(["artifact", "path", "format", "precision", "method", "I/O", "bytes", "MB", "sha256"], rows)
    return _section("Size per artifact", table + plot)


def _latency_section(report: dict) -> str:
    if not report.get("profiles"):
        return _section("Latency per device", _absent("latency"))
    return _section("Latency per device", "".join(_device_block(report, device) for device in devices(report)))


def _device_block(report: dict, device: str) -> str:
    profiles = [p for p in report["profiles"] if p["device"] == device]
    kinds = sorted({p["obtained"] for p in profiles})
    latency_columns = any(is_device_latency(p) for p in profiles)  # the ms columns only where a latency is
    rows = [_latency_row(report, profile, latency_columns) for profile in profiles]
    headers = ["artifact", "runtime", "delegate", "precision", "threads", "obtained", "measured",
               *(["p90 ms", "p99 ms", "mean ± std ms", "min ms"] if latency_columns else []), "runs", "int8/float"]
    startup = [[p["artifact"], p["runtime"], p["delegate"] or "not recorded", *_startup_cells(p)] for p in profiles]
    parts = [f"<h3>{escape(device)} ({escape(', '.join(kinds))})</h3>", _table(headers, rows),
             '<p class="note">int8/float: this file\'s figure over its float twin\'s (same device, runtime, delegate, '
             'threads); above 1, int8 is slower.</p>',
             f'<p class="note">{escape(_machine_facts(profiles[0]))}</p>']
    if any(p["obtained"] == "real" for p in profiles):  # elsewhere times and memory are the emulator's
        parts[3:3] = ["<h4>Start-up and memory</h4>",
                      _table(["artifact", "runtime", "delegate", "init ms", "1st run ms", "peak RSS MB"], startup)]
    if not latency_columns:
        parts.insert(2, f'<p class="note">{escape(_not_latency_text(profiles[0]))}.</p>')
    elif any(not is_device_latency(p) for p in profiles):
        parts.append('<p class="note">Only latencies measured on the real device fill the ms columns. Emulated and '
                     'simulated runs report their own metric (instructions per inference, ...); their wall-clock '
                     'times are not device latencies and are not shown.</p>')
    parts += [note for note in dict.fromkeys(_note_text(p) for p in profiles) if note]
    for group in _measurement_groups(profiles):
        parts.append(_accuracy_latency_plot(report, device, group))
    parts += [_per_node_plot(profile, index) for index, profile in enumerate(profiles) if profile.get("per_node")]
    parts += [estimate_block(profile) for profile in profiles if profile.get("estimate")]
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


def _not_latency_text(profile: dict) -> str:
    return f"not a latency ({profile['obtained']}): see {metric_label(profile['metric'])}"


def _latency_row(report: dict, profile: dict, latency_columns: bool = True) -> list:
    head = [profile["artifact"], profile["runtime"], profile["delegate"] or "not recorded",
            _precision_of(report, profile), profile["threads"], profile["obtained"], _Cell(_measured_text(profile), "n")]
    tail = [profile["runs"], _ratio_cell(profile)]
    if not latency_columns:
        return [*head, *tail]
    if not is_device_latency(profile):  # no device latency: one grey cell instead of the ms columns
        return [*head, _Cell(_not_latency_text(profile), "na", 4), *tail]
    latency = profile["distribution"] or {}

    def ms(value):
        return "-" if value is None else _num(value, 3)

    spread = (f"{latency['mean']:.3f} ± {latency['std']:.3f}"
              if latency.get("mean") is not None and latency.get("std") is not None else "-")
    return [*head, *(ms(latency.get(k)) for k in ("p90", "p99")), _Cell(spread, "n"), ms(latency.get("min")), *tail]


def _startup_cells(profile: dict) -> list:
    """Init time, first inference and peak RSS: wall-clock and memory of the real device only."""
    if profile["obtained"] != "real":  # the emulator's (or simulator host's) times and memory, not the device's
        return [_Cell(f"n/a ({profile['obtained']})", "na", 3)]
    times = ["-" if profile.get(key) is None else _num(profile[key], 3) for key in ("init_ms", "first_inference_ms")]
    return [*times, "-" if profile.get("peak_rss_mb") is None else _num(profile["peak_rss_mb"], 1)]


def _machine_facts(profile: dict) -> str:
    """The known facts about the machine that ran ``profile``, each with where it came from."""
    target = profile.get("target") or {}
    kind = profile.get("kind") or target.get("kind")
    parts = []
    if kind:
        parts.append(f"device kind {kind} (device file)")
    if profile.get("cpu"):
        parts.append(f"cpu {profile['cpu']} (device file)")
    if target.get("qemu_cpu"):
        parts.append(f"emulated CPU {target['qemu_cpu']} (qemu -cpu, device file)")
    emulated = profile["obtained"] == "emulated"
    sources = FACT_SOURCES["adb" if kind == "adb" else "script"]
    where = "inside qemu-user" if emulated else "on the device"
    for key, value in (profile.get("host") or {}).items():
        if value is None or (emulated and key in ("cores", "governor")):  # under qemu-user those are the host's
            continue
        source = sources.get(key, "the on-device script")
        parts.append(f"{key} {value} ({source}, read {where})")
    if emulated:
        parts.append("no core count or governor: under qemu-user they would be the host's")
    return "Machine: " + ("; ".join(parts) if parts else "not recorded in this report") + "."


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


def _ratio_cell(profile: dict) -> "_Cell | str":
    if profile.get("ratio_to_float") is None:
        return "-"
    text = f"{ratio_text(profile)} vs {profile.get('float_artifact') or 'float'}"
    if profile["ratio_to_float"] > 1:
        return _Cell(f"{text}: int8 SLOWER", "bad")
    return text


def _accuracy_latency_plot(report: dict, device: str, profiles: list[dict]) -> str:
    """Top-1 against the value of ``profiles`` (all of one metric, obtained one way)."""
    float_series = plots.Series("float32", plots.FLOAT_COLOR)
    int8_series = plots.Series("int8", plots.INT8_COLOR, marker="square")
    measured = [(profile, accuracy_for(report, profile["artifact"], profile["runtime"])) for profile in profiles]
    measured = [(profile, entry) for profile, entry in measured if entry is not None and profile["value"] is not None]
    for (profile, entry), label in zip(measured, _point_labels(report, measured)):
        series = int8_series if entry["precision"] == "int8" else float_series
        series.points.append((profile["value"], entry["top1"]))
        series.labels.append(label)
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


def _point_labels(report: dict, measured: list[tuple[dict, dict]]) -> list[str]:
    """Short point labels: artifact, runtime/delegate, threads, method, less what every point shares (the
    delegate and thread count are in the table above) and the method where the artifact's name says it."""
    one_delegate_each = all(len({q["delegate"] for q, _ in measured if q["runtime"] == p["runtime"]}) == 1
                            for p, _ in measured)
    rows = [[artifact_key(report, p["artifact"]),
             p["runtime"] if one_delegate_each else f"{p['runtime']}/{p['delegate']}", f"{p['threads']}t", e["method"]]
            for p, e in measured]
    shared = {i for i in range(1, 4) if len(rows) > 1 and len({row[i] for row in rows}) == 1}
    return [" ".join(part for i, part in enumerate(row) if i not in shared and not (i == 3 and part in row[0]))
            for row in rows]


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
    if not described:
        return "?"
    return described["precision"] if described["method"] == "float" else f"{described['precision']} {described['method']}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "device"
