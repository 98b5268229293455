"""int8/float latency ratio of a build's exported files in LiteRT and onnxruntime, and the accuracy drops.

Times what the profile stage times, with its own code (``edgekit/profile/ondevice.py``: its model
classes and timed loop): the runtime's call on an input already in the model's layout and dtype.
LiteRT: ``set_tensor`` of the prepared input, ``invoke``, ``get_tensor`` (XNNPACK); onnxruntime:
``InferenceSession.run`` on a prepared feed (CPU EP). The float file and its int8 twin get the same image,
prepared for each once before any timing (transposed to the model's layout and, for an int8 input,
quantised with its scale), the same threads and no output post-processing. Batch 1, 1 thread (default),
this machine's CPU, real (not emulated). Float and int8 are timed in alternating blocks within one run;
each block's p50 is taken and the ratio of the medians over the blocks is printed. Goals for the default
recipe: LiteRT <= 0.60, onnxruntime <= 0.65. Accuracy drops come from the build's report.json (full test
split, measured inside each runtime).

    .venv/bin/python benchmarks/int8_latency.py [builds/mobilenet_0.5_160] [--threads 1] [--rounds 5] [--runs 200]
    .venv/bin/python benchmarks/int8_latency.py --quick     # builds/smoke, 2 rounds of 20 runs: checks it runs
"""

from __future__ import annotations

import argparse
import platform
import statistics
from pathlib import Path

import numpy as np

from edgekit.profile import ondevice
from edgekit.report import load_report

DEFAULT_BUILD = "builds/mobilenet_0.5_160"
QUICK_BUILD = "builds/smoke"
WARMUP_RUNS = 20


def load(path: Path, threads: int, runs: int):
    """The on-device script's model for ``path`` and its protocol arguments (``runs`` timed runs a block)."""
    args = ondevice.parse_args([str(path), "--threads", str(threads), "--min-runs", str(runs), "--max-runs", str(runs),
                                "--min-seconds", "0"])
    args.scratch = None  # the folder for --per-node's profile file: not used here
    return ondevice.load_model(args), args


def block_p50(model, prepared: np.ndarray, args, warmup: int = 0) -> float:
    times, _ = ondevice.measure(model, prepared, args, ondevice.Markers(False), warmup)
    return ondevice.latency_stats(times)["p50"]


def int8_pairs(report: dict) -> list[tuple[dict, dict]]:
    """(float artifact, int8 artifact) of the same format, for every int8 file of the build."""
    float_of = {entry["format"]: entry for entry in report["artifacts"]
                if entry["precision"] == "float32" and entry["format"] != "torch"}
    return [(float_of[entry["format"]], entry) for entry in report["artifacts"]
            if entry["precision"] == "int8" and entry["format"] in float_of]


def top1(accuracy: dict, artifact: dict, runtime: str) -> float | None:
    """The artifact's top-1 in ``runtime``; report entries name an artifact by its path or by its name."""
    return accuracy.get((artifact["path"], runtime), accuracy.get((artifact["name"], runtime)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", nargs="?", help=f"default: {DEFAULT_BUILD} ({QUICK_BUILD} with --quick)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="tiny run that only checks the benchmark works")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.runs = 2, 20
    build = Path(args.build or (QUICK_BUILD if args.quick else DEFAULT_BUILD))
    report = load_report(build / "report.json")
    resolution = report["model"]["resolution"]
    image = np.random.default_rng(0).standard_normal((1, 3, resolution, resolution)).astype(np.float32)
    accuracy = {(entry["artifact"], entry["runtime"]): entry["top1"] for entry in report["accuracy"]}
    print(f"{build}: batch 1, {args.threads} thread(s), {platform.machine()} CPU of this machine, real (not emulated); "
          f"runtime call on prepared inputs, as the profile stage times it")
    for float_entry, int8_entry in int8_pairs(report):
        float_model, protocol = load(build / float_entry["path"], args.threads, args.runs)
        int8_model, _ = load(build / int8_entry["path"], args.threads, args.runs)
        prepared = {model: ondevice.prepare(image, model.input_spec()) for model in (float_model, int8_model)}
        for model in (float_model, int8_model):
            block_p50(model, prepared[model], protocol, warmup=WARMUP_RUNS)
        float_ms, int8_ms = [], []
        for _ in range(args.rounds):
            float_ms.append(block_p50(float_model, prepared[float_model], protocol))
            int8_ms.append(block_p50(int8_model, prepared[int8_model], protocol))
        ratio = statistics.median(int8_ms) / statistics.median(float_ms)
        runtime = float_model.runtime
        float_top1, int8_top1 = (top1(accuracy, entry, runtime) for entry in (float_entry, int8_entry))
        drop = f"{float_top1 - int8_top1:+.2f} points" if None not in (float_top1, int8_top1) else "n/a"
        print(f"{runtime:<12} {float_entry['format']:<6} {int8_entry['method']}: "
              f"float {statistics.median(float_ms):.3f} ms ({float_model.delegate}), "
              f"int8 {statistics.median(int8_ms):.3f} ms ({int8_model.delegate}), int8/float {ratio:.2f}; "
              f"top-1 drop {drop} ({int8_entry['bytes'] / float_entry['bytes']:.0%} of the float size)")


if __name__ == "__main__":
    main()
