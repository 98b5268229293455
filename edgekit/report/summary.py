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
    return f"{verdict} ({check['int8']} int8, {check['float']} float)"


# --- the terminal table -------------------------------------------------------------------------


def format_summary(report: dict, out_dir: Path) -> str:
    """Model line, one row per artifact x runtime, then where report.json and report.html are."""
    report = upgrade_report(report)
    lines = [_model_line(report["model"]), ""]
    header, rows = _summary_rows(report)
    lines += _table(header, rows) if rows else ["accuracy: not measured in this build"]
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
    profiles = [p for p in report["profiles"] if (p["device"], p["threads"]) == (device, threads)]
    several_threads = len({p["threads"] for p in report["profiles"] if p["device"] == device}) > 1
    prefix = f"{device} {threads}t" if several_threads else device
    kinds = {(p["metric"], p["unit"], p["obtained"]) for p in profiles}
    if len(kinds) != 1:
        return f"{prefix} measured", f"{prefix} int8/float"
    ((metric, unit, obtained),) = kinds
    statistic = " p50" if any(p["distribution"] for p in profiles) else ""
    how = unit if obtained == "real" else obtained
    return f"{prefix} {metric_label(metric)}{statistic} ({how})", f"{prefix} int8/float"


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
