"""The terminal summary of a build (one row per artifact x runtime), and the report look-ups it shares
with the HTML page: which artifact an entry names, which profile measured it, what kind of number it is.
"""

from __future__ import annotations

from pathlib import Path

from edgekit.report.plots import format_number

FORMAT_BY_SUFFIX = {".onnx": "onnx", ".tflite": "tflite", ".pt": "torch", ".pth": "torch"}


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
    return FORMAT_BY_SUFFIX.get(Path(ref).suffix, "?")


def measurement_kind(profile: dict) -> str:
    """real | emulated | simulated: only 'real' times are latencies."""
    if profile.get("emulated"):
        return "emulated"
    return "simulated" if profile.get("simulated") else "real"


def shows_latency(profile: dict) -> bool:
    return measurement_kind(profile) == "real" and profile.get("latency_ms") is not None


def devices(report: dict) -> list[str]:
    return list(dict.fromkeys(profile["device"] for profile in report.get("profiles", [])))


def profile_for(report: dict, artifact: str, runtime: str, device: str) -> dict | None:
    key = artifact_key(report, artifact)
    for profile in report.get("profiles", []):
        if (profile["device"] == device and profile["runtime"] == runtime
                and artifact_key(report, profile["artifact"]) == key):
            return profile
    return None


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
    """p50 in ms on real hardware; instructions per inference otherwise (an emulated time is no latency)."""
    if shows_latency(profile):
        return f"{profile['latency_ms']['p50']:#.3g} ms"
    instructions = profile.get("instructions_per_inference")
    kind = measurement_kind(profile)
    if instructions is not None:
        return f"{format_number(instructions)} instr ({kind})"
    return f"no latency ({kind})" if kind != "real" else "not measured"


def ratio_text(profile: dict | None) -> str:
    if profile is None or profile.get("ratio_to_float") is None:
        return "-"
    suffix = "" if measurement_kind(profile) == "real" else " instr"
    return f"{profile['ratio_to_float']:.2f}{suffix}"


def kernel_text(check: dict | None) -> str:
    if check is None:
        return "-"
    verdict = "ok" if check["ok"] else "FLOAT KERNELS"
    return f"{verdict} ({check['int8']} int8, {check['float']} float)"


# --- the terminal table -------------------------------------------------------------------------


def format_summary(report: dict, out_dir: Path) -> str:
    """Model line, one row per artifact x runtime, then where report.json and report.html are."""
    lines = [_model_line(report["model"]), ""]
    header, rows = _summary_rows(report)
    lines += _table(header, rows) if rows else ["accuracy: not measured in this build"]
    if not report.get("profiles"):
        lines.append("latency: not measured in this build")
    if report.get("not_yet_built"):
        lines.append(f"not built yet (later milestone issues): {', '.join(report['not_yet_built'])}")
    out_dir = Path(out_dir)
    lines.append(f"report: {out_dir / 'report.json'}")
    if (out_dir / "report.html").is_file():
        lines.append(f"html:   {out_dir / 'report.html'}")
    return "\n".join(lines)


def _model_line(model: dict) -> str:
    return (f"{model['arch']} α={model['alpha']} ρ={model['resolution']} classes={model['num_classes']}: "
            f"{model['macs'] / 1e6:.1f} M mult-adds, {model['params'] / 1e6:.3f} M params")


def _summary_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    device_names = devices(report)
    header = ["Artifact", "Runtime", "Format", "Precision", "Method", "Size MB", "Top-1 %", "Top-5 %"]
    for device in device_names:
        header += [f"{device} p50", f"{device} int8/float"]
    header.append("int8 check")
    rows = []
    for entry in report.get("accuracy", []):
        artifact, runtime = entry["artifact"], entry["runtime"]
        described = find_artifact(report, artifact)
        size = f"{described['bytes'] / 1e6:.2f}" if described else "-"
        row = [artifact, runtime, artifact_format(report, artifact), _precision_text(entry, described),
               entry["method"], size, f"{entry['top1']:.2f}", f"{entry['top5']:.2f}"]
        for device in device_names:
            profile = profile_for(report, artifact, runtime, device)
            row += [cost_text(profile) if profile else "-", ratio_text(profile)]
        row.append(kernel_text(kernel_check_for(report, artifact, runtime)))
        rows.append(row)
    return header, rows


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
