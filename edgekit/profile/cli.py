"""``edgekit profile ARTIFACT... --device devices/X.yaml``: measure exported files on one device."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgekit.errors import UserInputError


def add_parser(commands) -> argparse.ArgumentParser:
    """Add the ``profile`` command to ``edgekit``'s sub-parsers; its handler returns the exit code."""
    profile = commands.add_parser(
        "profile", help="measure exported .onnx/.tflite files on a device (latency, or instructions when emulated)")
    profile.add_argument("artifacts", nargs="+", type=Path, metavar="ARTIFACT", help="a model file (.onnx, .tflite, .pte)")
    profile.add_argument("--device", type=Path, required=True, metavar="PROFILE.yaml",
                         help="device profile, e.g. devices/host.yaml")
    profile.add_argument("--threads", type=int, action="append", metavar="N",
                         help="thread count instead of the profile's list (repeatable)")
    profile.add_argument("--float-twin", action="append", default=[], metavar="INT8=FLOAT", dest="float_twins",
                         help="measure INT8 interleaved with its float model FLOAT and report the ratio (repeatable)")
    profile.add_argument("--inputs", type=Path, metavar="FILE.npz", help="inputs (and labels) for the runs")
    profile.add_argument("--keep", type=Path, metavar="DIR",
                         help="keep the files a target compiles (Vela's .tflite for an Ethos-U) in DIR/<device>/")
    profile.add_argument("--json", action="store_true", help="print the entries as JSON on stdout")
    profile.set_defaults(handler=run_profile_command)
    return profile


def run_profile_command(args) -> int:
    from edgekit.profile.devices import load_device_profile
    from edgekit.profile.run import profile_artifacts

    device = load_device_profile(args.device)
    twins = parse_float_twins(args.float_twins)
    check_inputs_file(args.inputs)
    artifacts = list(args.artifacts) + [path for path in twins if path not in args.artifacts]
    log = (lambda line: print(line, file=sys.stderr)) if args.json else print
    entries = profile_artifacts(artifacts, device, float_twins={str(k): v for k, v in twins.items()},
                                threads=args.threads, inputs_npz=args.inputs, log=log, keep_dir=args.keep)
    if args.json:
        print(json.dumps(entries, indent=2))
    else:
        print()
        print(format_table(entries))
    return 0


def parse_float_twins(pairs: list[str]) -> dict[Path, Path]:
    twins = {}
    for pair in pairs:
        int8, sep, float_model = pair.partition("=")
        if not sep or not int8 or not float_model:
            raise UserInputError(f"--float-twin {pair}: expected INT8=FLOAT, e.g. --float-twin q.onnx=f.onnx")
        twins[Path(int8)] = Path(float_model)
    return twins


def check_inputs_file(path: Path | None) -> None:
    """``--inputs`` must name a readable file; checked before any target is set up."""
    if path is None:
        return
    if not path.exists():
        raise UserInputError(f"--inputs {path}: file not found")
    if not path.is_file():
        raise UserInputError(f"--inputs {path}: not a file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise UserInputError(f"--inputs {path}: cannot read it: {exc.strerror or exc}") from None


COLUMNS = ("artifact", "device", "runtime", "threads", "obtained", "p50 ms", "p90 ms", "M instr", "estimate", "spread %",
           "runs", "x float")
TEXT_COLUMNS = {0, 1, 2, 4}


def format_table(entries: list[dict]) -> str:
    """One row per measurement; every number stands next to its device, runtime, threads and mode."""
    rows = [COLUMNS] + [_row(entry) for entry in entries]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(width) if i in TEXT_COLUMNS else cell.rjust(width) for i, (cell, width)
                       in enumerate(zip(row, widths))).rstrip() for row in rows]
    notes = {entry["obtained"] for entry in entries} - {"real"}
    if "emulated" in notes:
        lines.append("emulated: instructions counted under qemu; no latency (wall time under emulation means nothing)")
    if "simulated" in notes:
        lines.append("simulated: NPU simulator on this machine; no device latency")
    if "estimated" in notes:
        lines.append("estimated: a compiler's cost model on this machine (e.g. Vela for an Ethos-U); no latency")
    return "\n".join(lines)


def _row(entry: dict) -> tuple[str, ...]:
    latency = (entry["distribution"] or {}) if entry["metric"] == "latency" and entry["obtained"] == "real" else {}
    instructions = entry["value"] if entry["metric"] == "instructions" else None
    return (
        Path(entry["artifact"]).name, entry["device"], f"{entry['runtime']}/{entry['delegate']}",
        str(entry["threads"]), entry["obtained"], _number(latency.get("p50")), _number(latency.get("p90")),
        _number(instructions / 1e6 if instructions else None), _estimate_text(entry), _number(entry["spread_pct"], 1),
        str(entry["runs"]), _number(entry["ratio_to_float"], 2),
    )


def _estimate_text(entry: dict) -> str:
    if entry["obtained"] != "estimated":
        return "-"
    return "not supported" if entry["value"] is None else f"{entry['value']:,.0f} {entry['unit']}"


def _number(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
