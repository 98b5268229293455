"""Repeatability of profiling: the spread of p50 latency on the host and of instruction counts on an
emulated core, over repeated profiling runs in one invocation; and the int8/float instruction ratio.

Goals: host p50 spread <= 3%, emulated instruction-count spread <= 0.1%, int8/float instructions on
Cortex-A76 <= 0.35 (for the default recipe's QAT model).

    .venv/bin/python benchmarks/profile_spread.py [builds/mobilenet_0.5_160] [--repeats 3] [--runtime litert]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from edgekit.profile import load_device_profile, profile_artifacts

FORMAT = {"litert": "tflite", "onnxruntime": "onnx"}


def spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.median(values) * 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", nargs="?", default="builds/mobilenet_0.5_160")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runtime", choices=sorted(FORMAT), default="litert")
    parser.add_argument("--host", default="devices/host.yaml")
    parser.add_argument("--emulated", default="devices/arm64-cortex-a76-emulated.yaml")
    args = parser.parse_args()
    build = Path(args.build)
    artifacts = {entry["name"]: build / entry["path"] for entry in json.loads((build / "report.json").read_text())["artifacts"]}
    fmt = FORMAT[args.runtime]
    float_file, int8_file = artifacts[f"float_{fmt}"], artifacts[f"qat_{fmt}"]
    quiet = lambda _line: None  # noqa: E731

    host = load_device_profile(args.host)
    p50s = []
    for _ in range(args.repeats):
        entries = profile_artifacts([float_file], host, threads=1, log=quiet)
        p50s.append(next(e for e in entries if e["runtime"] == args.runtime)["latency_ms"]["p50"])
    print(f"host ({host.name}, {args.runtime}, 1 thread, real): float p50 over {args.repeats} profiling runs "
          f"{', '.join(f'{p:.3f}' for p in p50s)} ms -> spread {spread(p50s):.2f}% (goal <= 3%)")

    emulated = load_device_profile(args.emulated)
    counts, ratios = [], []
    for _ in range(args.repeats):
        entries = profile_artifacts([float_file, int8_file], emulated, float_twins={str(int8_file): float_file},
                                    threads=1, log=quiet)
        by_file = {Path(e["artifact"]).name: e for e in entries if e["runtime"] == args.runtime}
        counts.append(by_file[float_file.name]["instructions_per_inference"])
        ratios.append(by_file[int8_file.name]["ratio_to_float"])
    print(f"{emulated.name} ({args.runtime}, 1 thread, emulated): float instructions/inference "
          f"{', '.join(str(c) for c in counts)} -> spread {spread(counts):.3f}% (goal <= 0.1%)")
    print(f"{emulated.name}: int8/float instruction ratio (QAT {fmt}) {statistics.median(ratios):.3f} (goal <= 0.35)")


if __name__ == "__main__":
    main()
