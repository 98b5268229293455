"""Repeatability of profiling: the spread of p50 latency on the host and of instruction counts on an
emulated core, over repeated profiling runs in one invocation; and the int8/float instruction ratio.

Both go through the build's own profiling (``profile_artifacts``). Instruction counts are net of the
harness: the on-device script counts the same timed loop with no inference and subtracts it (the
harness count is printed too). Goals: host p50 spread <= 3%, emulated instruction-count spread <= 0.1%,
int8/float instructions on Cortex-A76 <= 0.35 (for the default recipe's QAT model).

    .venv/bin/python benchmarks/profile_spread.py [builds/mobilenet_0.5_160] [--repeats 3] [--format tflite]
    .venv/bin/python benchmarks/profile_spread.py --quick     # builds/smoke, host-smoke, 2 repeats: checks it runs
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from edgekit.profile import load_device_profile, profile_artifacts
from edgekit.report import load_report

DEFAULT_BUILD = "builds/mobilenet_0.5_160"
QUICK_BUILD = "builds/smoke"


def spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.median(values) * 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", nargs="?", help=f"default: {DEFAULT_BUILD} ({QUICK_BUILD} with --quick)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--format", default="tflite", help="the float and QAT files of this format (default: tflite)")
    parser.add_argument("--host", help="default: devices/host.yaml (devices/host-smoke.yaml with --quick)")
    parser.add_argument("--emulated", default="devices/arm64-cortex-a76-emulated.yaml")
    parser.add_argument("--quick", action="store_true", help="tiny run that only checks the benchmark works")
    args = parser.parse_args()
    if args.quick:
        args.repeats = 2
    build = Path(args.build or (QUICK_BUILD if args.quick else DEFAULT_BUILD))
    artifacts = {entry["name"]: build / entry["path"] for entry in load_report(build / "report.json")["artifacts"]}
    float_file, int8_file = artifacts[f"float_{args.format}"], artifacts[f"qat_{args.format}"]
    quiet = lambda _line: None  # noqa: E731

    host = load_device_profile(args.host or ("devices/host-smoke.yaml" if args.quick else "devices/host.yaml"))
    p50s = []
    for _ in range(args.repeats):
        entry = profile_artifacts([float_file], host, threads=1, log=quiet)[0]
        p50s.append(entry["value"])  # metric latency, unit ms
    print(f"host ({host.name}, {entry['runtime']}, 1 thread, real): float p50 over {args.repeats} profiling runs "
          f"{', '.join(f'{p:.3f}' for p in p50s)} ms -> spread {spread(p50s):.2f}% (goal <= 3%)")

    emulated = load_device_profile(args.emulated)
    counts, harness, ratios = [], [], []
    for _ in range(args.repeats):
        entries = profile_artifacts([float_file, int8_file], emulated, float_twins={str(int8_file): float_file},
                                    threads=1, log=quiet)
        by_file = {Path(e["artifact"]).name: e for e in entries}
        counts.append(by_file[float_file.name]["value"])  # metric instructions
        harness.append(by_file[float_file.name]["harness_instructions"])
        ratios.append(by_file[int8_file.name]["ratio_to_float"])
    runtime = by_file[float_file.name]["runtime"]
    print(f"{emulated.name} ({runtime}, 1 thread, emulated): float instructions/inference "
          f"{', '.join(str(c) for c in counts)} (net of a harness of {', '.join(str(h) for h in harness)}) "
          f"-> spread {spread(counts):.3f}% (goal <= 0.1%)")
    print(f"{emulated.name}: int8/float instruction ratio (QAT {args.format}) {statistics.median(ratios):.3f} (goal <= 0.35)")


if __name__ == "__main__":
    main()
