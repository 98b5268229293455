"""int8/float latency ratio of a build's exported files in LiteRT and onnxruntime, and the accuracy drops.

Batch 1, 1 thread (default), this machine's CPU, real (not emulated). Float and int8 sessions are timed
in alternating blocks within one run, and the ratio of the medians is printed. Goals for the default
recipe: LiteRT <= 0.60, onnxruntime <= 0.65. Accuracy drops come from the build's report.json (full
test split, measured inside each runtime).

    .venv/bin/python benchmarks/int8_latency.py [builds/mobilenet_0.5_160] [--threads 1] [--rounds 5] [--runs 200]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from edgekit.runtimes import get_runtime

RUNTIME_FOR_FORMAT = {"tflite": "litert", "onnx": "onnxruntime"}


def time_block(session, image: np.ndarray, runs: int) -> float:
    started = time.perf_counter()
    for _ in range(runs):
        session.run(image)
    return (time.perf_counter() - started) / runs * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", nargs="?", default="builds/mobilenet_0.5_160")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    build = Path(args.build)
    report = json.loads((build / "report.json").read_text())
    resolution = report["model"]["resolution"]
    image = np.random.default_rng(0).standard_normal((1, 3, resolution, resolution)).astype(np.float32)
    artifacts = {entry["name"]: entry for entry in report["artifacts"]}
    accuracy = {(entry["artifact"], entry["runtime"]): entry["top1"] for entry in report["accuracy"]}
    print(f"{build}: batch 1, {args.threads} thread(s), {platform.machine()} CPU of this machine, real (not emulated)")
    for fmt, runtime_name in RUNTIME_FOR_FORMAT.items():
        if f"float_{fmt}" not in artifacts:
            continue
        runtime = get_runtime(runtime_name)
        float_entry = artifacts[f"float_{fmt}"]
        float_session = runtime.load(build / float_entry["path"], threads=args.threads)
        for method in ("ptq", "qat"):
            int8_entry = artifacts.get(f"{method}_{fmt}")
            if int8_entry is None:
                continue
            int8_session = runtime.load(build / int8_entry["path"], threads=args.threads)
            for session in (float_session, int8_session):
                time_block(session, image, 20)  # warm-up
            float_ms, int8_ms = [], []
            for _ in range(args.rounds):
                float_ms.append(time_block(float_session, image, args.runs))
                int8_ms.append(time_block(int8_session, image, args.runs))
            ratio = statistics.median(int8_ms) / statistics.median(float_ms)
            drop = accuracy[(float_entry["path"], runtime_name)] - accuracy[(int8_entry["path"], runtime_name)]
            print(f"{runtime_name:<12} {fmt:<6} {method}: float {statistics.median(float_ms):.3f} ms, "
                  f"int8 {statistics.median(int8_ms):.3f} ms, int8/float {ratio:.2f}; "
                  f"top-1 drop {drop:+.2f} points ({int8_entry['bytes'] / float_entry['bytes']:.0%} of the float size)")


if __name__ == "__main__":
    main()
