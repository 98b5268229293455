"""The terminal summary of a build (one row per artifact x runtime), and the report look-ups it shares
with the HTML page and the gate: which artifact an entry names, which profiles measured it (matched on
device, runtime, delegate, threads and artifact), what kind of number each one is.
"""

from __future__ import annotations

from pathlib import Path

from edgekit.formats import FORMATS
from edgekit.report.plots import format_number
from edgekit.report.schema import upgrade_report

TORCH_SUFFIXES = (".pt", ".pth")
SHORT_UNITS = {"instructions": "instr"}
SUMMARY_WIDTH = 120  # terminal columns of the default summary (--wide: no limit)
KEY_COLUMNS = 2  # artifact, runtime: repeated in every table of a split summary


# --- reading a report ---------------------------------------------------------------------------


def find_artifact(report: dict, ref: str) -> dict | None:
    """The ``artifacts`` entry that ``ref`` names (by name or by path), or None."""
    for artifact in report.get("artifacts", []):
        if ref in (artifact.get("name"), artifact.get("path")):
            return artifact
    return None


def artifact_key(report: dict, ref: str) -> str:
    """One name per artifact, whether an entry refers to it by name or by path."""
    artifact = find_artifact(report, ref)
    return artifact["name"] if artifact else ref


def artifact_format(report: dict, ref: str) -> str:
    artifact = find_artifact(report, ref)
    if artifact:
        return artifact["format"]
    suffix = Path(ref).suffix
    if suffix in TORCH_SUFFIXES:
        return "torch"
    return next((fmt.name for fmt in FORMATS.values() if fmt.suffix == suffix), "?")


def is_device_latency(profile: dict) -> bool:
    """Only a latency obtained on the real device is shown as a latency (never an emulated time)."""
    return profile["metric"] == "latency" and profile["obtained"] == "real" and profile["value"] is not None


def metric_label(metric: str) -> str:
    return metric.replace("_", " ")


def devices(report: dict) -> list[str]:
    return list(dict.fromkeys(profile["device"] for profile in report.get("profiles", [])))


def profile_key(report: dict, profile: dict) -> tuple:
    """What makes two profiles comparable: (artifact, device, runtime, delegate, threads)."""
    return (artifact_key(report, profile["artifact"]), profile["device"], profile["runtime"], profile["delegate"],
            profile["threads"])


def profiles_for(report: dict, artifact: str, runtime: str, device: str, threads: int) -> list[dict]:
    """The profiles of ``artifact`` in ``runtime`` on ``device`` with ``threads`` threads, one per delegate."""
    key = artifact_key(report, artifact)
    return [profile for profile in report.get("profiles", [])
            if (profile["device"], profile["runtime"], profile["threads"]) == (device, runtime, threads)
            and artifact_key(report, profile["artifact"]) == key]


def accuracy_for(report: dict, artifact: str, runtime: str) -> dict | None:
    return _entry_for(report, "accuracy", artifact, runtime)


def kernel_check_for(report: dict, artifact: str, runtime: str) -> dict | None:
    return _entry_for(report, "int8_kernels", artifact, runtime)


def _entry_for(report: dict, section: str, artifact: str, runtime: str) -> dict | None:
    """The first entry of ``report[section]`` about ``artifact`` (by name or path) in ``runtime``."""
    key = artifact_key(report, artifact)
    for entry in report.get(section, []):
        if entry["runtime"] == runtime and artifact_key(report, entry["artifact"]) == key:
            return entry
    return None


def cost_text(profile: dict) -> str:
    """The measured value with its unit, and how it was obtained when not on the real device."""
    value, obtained = profile["value"], profile["obtained"]
    if value is None:
        return f"no {metric_label(profile['metric'])} ({obtained})" if obtained != "real" else "not measured"
    if profile["unit"] == "ms":
        text = f"{value:#.3g} ms"
    else:
        text = f"{format_number(value)} {SHORT_UNITS.get(profile['unit'], profile['unit'])}"
    return text if obtained == "real" else f"{text} ({obtained})"


def ratio_text(profile: dict | None) -> str:
    if profile is None or profile.get("ratio_to_float") is None:
        return "-"
    ratio = f"{profile['ratio_to_float']:.2f}"
    if profile["metric"] == "latency":
        return ratio if profile["obtained"] == "real" else f"{ratio} ({profile['obtained']})"
    return f"{ratio} {SHORT_UNITS.get(profile['metric'], metric_label(profile['metric']))}"


def kernel_text(check: dict | None) -> str:
    if check is None:
        return "-"
    verdict = "ok" if check["ok"] else "FLOAT KERNELS"
    kept = " as kept" if check["ok"] and check.get("expected_float") else ""  # quantize.keep_float's layers
    return f"{verdict} ({check['int8']} int8, {check['float']} float{kept})"


def float_profile_for(report: dict, profile: dict) -> dict | None:
    """The profile of ``profile``'s float counterpart: same device, runtime, delegate, threads and metric."""
    if not profile.get("float_artifact"):
        return None
    wanted = (artifact_key(report, profile["float_artifact"]), profile["device"], profile["runtime"],
              profile["delegate"], profile["threads"], profile["metric"])
    return next((other for other in report.get("profiles", [])
                 if (artifact_key(report, other["artifact"]), other["device"], other["runtime"], other["delegate"],
                     other["threads"], other["metric"]) == wanted), None)


def int8_slowdowns(report: dict) -> list[dict]:
    """Profiles of int8 files that cost more than their float counterpart (int8/float ratio above 1)."""
    return [profile for profile in report.get("profiles", []) if (profile.get("ratio_to_float") or 0) > 1]


def slowdown_text(report: dict, profile: dict) -> str:
    """'int8/ptq.onnx (onnxruntime/cpu, 1t) on host: 1.28x the float latency of float/model.onnx'."""
    what = "latency" if profile["metric"] == "latency" else metric_label(profile["metric"])
    return (f"{profile['artifact']} ({profile['runtime']}/{profile['delegate']}, {profile['threads']}t) on "
            f"{profile['device']}: {profile['ratio_to_float']:.2f}x the float {what} of {profile['float_artifact']}")


def slowdown_reason(report: dict, profile: dict) -> str:
    """The likely reason an int8 file is slower, from what the report knows: its kernel check, its
    per-layer times next to its float twin's, its float I/O; or that the report cannot tell."""
    check = kernel_check_for(report, profile["artifact"], profile["runtime"])
    if check is not None and not check["ok"]:
        ops = ", ".join(check["float_ops"]) or "some ops"
        return f"the kernel check found {check['float']} float kernels ({ops}) in the int8 file"
    growth = _per_layer_growth(profile, float_profile_for(report, profile))
    if growth:
        return "per-layer times, int8 minus float: " + ", ".join(f"{op} {ms:+.3f} ms" for op, ms in growth)
    from edgekit.report.per_layer_html import per_op_growth

    growth = per_op_growth(report, profile["artifact"], profile["runtime"])
    if growth:
        return ("time per layer on this host (onnxruntime's profiler), int8 minus float: "
                + ", ".join(f"{layer} {ms:+.3f} ms" for layer, ms in growth))
    known = []
    if check is not None:
        known.append(f"every conv, FC and residual add ran an int8 kernel ({check['int8']} int8, 0 float)")
    artifact = find_artifact(report, profile["artifact"])
    if artifact and artifact.get("io") == "float32":
        known.append("its inputs and outputs are float32, quantized and dequantized inside the file")
    known.append("the report has no per-layer times for this run to say where the time goes")
    return "; ".join(known)


def _per_layer_growth(int8: dict, float_twin: dict | None, top: int = 3) -> list[tuple[str, float]]:
    """The op types whose summed per-node ms grew most from the float run to the int8 run."""
    if not int8.get("per_node") or not float_twin or not float_twin.get("per_node"):
        return []

    def per_op(nodes: list[dict]) -> dict[str, float]:
        totals: dict[str, float] = {}
        for node in nodes:
            if node.get("ms") is not None:
                op = node.get("op_type") or node["name"]
                totals[op] = totals.get(op, 0.0) + node["ms"]
        return totals

    ints, floats = per_op(int8["per_node"]), per_op(float_twin["per_node"])
    growth = sorted(((op, ms - floats.get(op, 0.0)) for op, ms in ints.items()), key=lambda item: -item[1])
    return [(op, delta) for op, delta in growth[:top] if delta > 0]


# --- the terminal table -------------------------------------------------------------------------


def format_summary(report: dict, out_dir: Path, *, wide: bool = False, width: int = SUMMARY_WIDTH) -> str:
    """Model line, one row per artifact x runtime, then where report.json and report.html are.

    By default the table fits ``width`` columns (device columns combine the value and the int8/float
    ratio, and go to further tables when they do not fit beside the others); ``wide``: every column."""
    report = upgrade_report(report)
    lines = [_model_line(report["model"]), ""]
    if not report.get("accuracy"):
        lines.append("accuracy: not measured in this build")
    elif wide:
        lines += _table(*_summary_rows(report))
    else:
        lines += _compact_tables(report, width)
    lines += _slowdown_lines(report, None if wide else width)
    from edgekit.report.per_layer_html import costliest_kernel_lines, worst_layer_lines

    lines += worst_layer_lines(report, width)
    from edgekit.report.estimate_html import estimate_lines

    lines += estimate_lines(report, width)
    lines += costliest_kernel_lines(report, width)
    if not report.get("profiles"):
        lines.append("latency: not measured in this build")
    if not report["build"]["complete"]:
        lines.append(incomplete_text(report["build"]))
    out_dir = Path(out_dir)
    lines.append(f"report: {out_dir / 'report.json'}")
    if (out_dir / "report.html").is_file():
        lines.append(f"html:   {out_dir / 'report.html'}")
    return "\n".join(lines)


def incomplete_text(build: dict) -> str:
    """Why a build is incomplete, in one line."""
    missing = [name for name in build["stages_planned"] if name not in build["stages_finished"]]
    if missing:
        return f"build incomplete: stages not finished: {', '.join(missing)}"
    return "build incomplete: no accuracy was measured"


def _model_line(model: dict) -> str:
    return (f"{model['arch']} α={model['alpha']} ρ={model['resolution']} classes={model['num_classes']}: "
            f"{model['macs'] / 1e6:.1f} M mult-adds, {model['params'] / 1e6:.3f} M params")


def _measurement_columns(report: dict) -> list[tuple[str, int]]:
    """(device, threads) of every profile, in report order: one pair of summary columns each."""
    return list(dict.fromkeys((profile["device"], profile["threads"]) for profile in report.get("profiles", [])))


def _column_names(report: dict, device: str, threads: int) -> tuple[str, str]:
    """Named after what the column holds, e.g. 'host latency p50 (ms)', 'cortex-a76 instructions (emulated)'."""
    prefix = _device_column(report, device, threads)
    return f"{prefix} {_column_kind(report, device, threads)}", f"{prefix} int8/float"


def _column_kind(report: dict, device: str, threads: int) -> str:
    """What a device's figures are: 'latency p50 (ms)', 'instructions (emulated)', or 'measured' when mixed."""
    profiles = [p for p in report["profiles"] if (p["device"], p["threads"]) == (device, threads)]
    kinds = {(p["metric"], p["unit"], p["obtained"]) for p in profiles}
    if len(kinds) != 1:
        return "measured"
    ((metric, unit, obtained),) = kinds
    statistic = " p50" if any(p["distribution"] for p in profiles) else ""
    how = unit if obtained == "real" else obtained
    return f"{metric_label(metric)}{statistic} ({how})"


def _summary_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    columns = _measurement_columns(report)
    header = ["Artifact", "Runtime", "Format", "Precision", "Method", "Size MB", "Top-1 %", "Top-5 %"]
    for device, threads in columns:
        header += _column_names(report, device, threads)
    header.append("int8 check")
    rows = []
    for entry in report.get("accuracy", []):
        artifact, runtime = entry["artifact"], entry["runtime"]
        described = find_artifact(report, artifact)
        size = f"{described['bytes'] / 1e6:.2f}" if described else "-"
        row = [artifact, runtime, artifact_format(report, artifact), _precision_text(entry, described),
               entry["method"], size, f"{entry['top1']:.2f}", f"{entry['top5']:.2f}"]
        for device, threads in columns:
            profiles = profiles_for(report, artifact, runtime, device, threads)
            row += [_per_delegate(profiles, cost_text), _per_delegate(profiles, ratio_text)]
        row.append(kernel_text(kernel_check_for(report, artifact, runtime)))
        rows.append(row)
    return header, rows


def _compact_tables(report: dict, width: int) -> list[str]:
    """The summary in at most ``width`` columns: precision and method in one column, no format or top-5
    column, one column per device holding the value and the int8/float ratio; device columns that do
    not fit go to a further table with the same artifact and runtime columns."""
    columns = _measurement_columns(report)
    header = ["Artifact", "Runtime", "Precision", "MB", "Top-1 %"]
    rows, device_cells = [], []
    for entry in report.get("accuracy", []):
        artifact, runtime = entry["artifact"], entry["runtime"]
        described = find_artifact(report, artifact)
        precision = "float32" if entry["precision"] == "float32" else f"int8 {entry['method']}"
        if _precision_text(entry, described).endswith("float I/O"):
            precision += ", float I/O"
        rows.append([artifact, runtime, precision, f"{described['bytes'] / 1e6:.2f}" if described else "-",
                     f"{entry['top1']:.2f}"])
        device_cells.append([_per_delegate(profiles_for(report, artifact, runtime, device, threads), _value_and_ratio)
                             for device, threads in columns])
    device_names = [_device_column(report, device, threads) for device, threads in columns]
    check = ["int8 check", *(_short_kernel_text(kernel_check_for(report, e["artifact"], e["runtime"]))
                             for e in report.get("accuracy", []))]
    header.append(check[0])
    rows = [row + [cell] for row, cell in zip(rows, check[1:])]
    lines = []
    for chunk in _column_chunks(header, rows, device_names, device_cells, width):
        chunk_header = header[:KEY_COLUMNS] + [device_names[i] for i in chunk] if lines else header + [
            device_names[i] for i in chunk]
        chunk_rows = [(row[:KEY_COLUMNS] if lines else row) + [cells[i] for i in chunk]
                      for row, cells in zip(rows, device_cells)]
        lines += ([""] if lines else []) + _table(chunk_header, chunk_rows)
    lines += _column_legend(report, columns)
    return lines


def _column_chunks(header, rows, names, cells, width: int) -> list[list[int]]:
    """Device column indices per table, as many as fit ``width`` beside the table's fixed columns."""
    def column_width(values: list[str]) -> int:
        return max(len(value) for value in values) + 2

    first = sum(column_width(column) for column in zip(header, *rows))
    key = sum(column_width(column) for column in list(zip(header, *rows))[:KEY_COLUMNS])
    chunks, current, used = [], [], first
    for index, name in enumerate(names):
        needed = column_width([name, *(row[index] for row in cells)])
        if current and used + needed - 2 > width:  # the last column has no separator after it
            chunks.append(current)
            current, used = [], key
        current.append(index)
        used += needed
    return chunks + [current] if current or not chunks else chunks


def _device_column(report: dict, device: str, threads: int) -> str:
    several_threads = len({p["threads"] for p in report["profiles"] if p["device"] == device}) > 1
    return f"{device} {threads}t" if several_threads else device


def _column_legend(report: dict, columns: list[tuple[str, int]]) -> list[str]:
    """What each device column holds (its metric and how it was obtained); the ratio is int8/float."""
    if not columns:
        return []
    return ["device columns: value (int8/float ratio)"] + [
        f"  {_device_column(report, device, threads)}: {_column_kind(report, device, threads)}"
        for device, threads in columns]


def _value_and_ratio(profile: dict) -> str:
    value = cost_text(profile).replace(f" ({profile['obtained']})", "")
    ratio = profile.get("ratio_to_float")
    if ratio is None:
        return value
    return f"{value} ({ratio:.2f}{' SLOWER' if ratio > 1 else ''})"


def _short_kernel_text(check: dict | None) -> str:
    if check is None:
        return "-"
    return "ok" if check["ok"] else f"FLOAT x{check['float']}"


def _slowdown_lines(report: dict, width: int | None) -> list[str]:
    """One paragraph per int8 file slower than its float twin: what, by how much, the likely reason."""
    import textwrap

    lines = []
    for profile in int8_slowdowns(report):
        text = f"int8 SLOWER than float: {slowdown_text(report, profile)}; likely reason: " \
               f"{slowdown_reason(report, profile)}"
        lines += textwrap.wrap(text, width, subsequent_indent="  ") if width else [text]
    return lines


def _per_delegate(profiles: list[dict], text) -> str:
    """One value, or one per delegate (named) when the runtime ran with several."""
    if not profiles:
        return "-"
    if len(profiles) == 1:
        return text(profiles[0])
    return "; ".join(f"{profile['delegate']}: {text(profile)}" for profile in profiles)


def _precision_text(entry: dict, artifact: dict | None) -> str:
    """``int8, float I/O`` for an int8 file that takes and gives float32 tensors (ONNX QDQ, tflite_io: float32)."""
    if entry["precision"] == "int8" and artifact and artifact.get("io") == "float32":
        return "int8, float I/O"
    return entry["precision"]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    numeric = {"Size MB", "Top-1 %", "Top-5 %"}
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]

    def render(cells: list[str]) -> str:
        return "  ".join(cell.rjust(width) if name in numeric else cell.ljust(width)
                         for cell, width, name in zip(cells, widths, header)).rstrip()

    return [render(header), "  ".join("-" * width for width in widths), *map(render, rows)]
