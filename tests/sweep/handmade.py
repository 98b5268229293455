"""Hand-made, hand-checked sweep data: four points of a tiny recipe with known top-1, latency on a real
host and instruction counts on an emulated core, and reports shaped exactly as report.json is (schema 2).

    point            macs   top-1  host ms  a76 instructions  int8 tflite MB
    alpha=0.25,res=32  1.0 M  70     0.10     2 M               0.10
    alpha=0.25,res=64  3.0 M  78     0.30     6 M               0.12
    alpha=0.5,res=32   2.5 M  76     0.35     4 M               0.35
    alpha=0.5,res=64   9.0 M  83     0.90     15 M              0.40

On the host, (0.5, 32) has fewer mult-adds than (0.25, 64) but is slower, and is dominated by it.
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import tiny_recipe_data

HOST, ARM = "host", "cortex-a76"
TABLE = {  # (alpha, resolution): (macs, top1, host ms, a76 instructions, tflite bytes)
    (0.25, 32): (1_000_000, 70.0, 0.10, 2_000_000, 100_000),
    (0.25, 64): (3_000_000, 78.0, 0.30, 6_000_000, 120_000),
    (0.5, 32): (2_500_000, 76.0, 0.35, 4_000_000, 350_000),
    (0.5, 64): (9_000_000, 83.0, 0.90, 15_000_000, 400_000),
}
GRID = ["model.alpha=[0.25,0.5]", "model.resolution=[32,64]"]
IDS = ["alpha=0.25,resolution=32", "alpha=0.25,resolution=64", "alpha=0.5,resolution=32", "alpha=0.5,resolution=64"]


def recipe_data(**sections) -> dict:
    return tiny_recipe_data(quantize={"method": "ptq"}, profile={"devices": []}, **sections)


def write_recipe(tmp_path: Path, **sections) -> Path:
    data = recipe_data(**sections)
    data.pop("name")
    path = tmp_path / "grid.yaml"
    path.write_text(json.dumps(data))  # JSON is YAML
    return path


def resolved_recipe(alpha: float, resolution: int) -> dict:
    from edgekit.recipe import validate

    data = recipe_data(model={"alpha": alpha, "resolution": resolution})
    data["name"] = "grid"
    return validate(data, source="<test>").model_dump(mode="json")


def make_report(alpha: float, resolution: int, *, complete: bool = True) -> dict:
    macs, top1, host_ms, instructions, tflite_bytes = TABLE[(alpha, resolution)]
    recipe = resolved_recipe(alpha, resolution)
    from edgekit.pipeline import stage_names

    stages = stage_names()  # what a full build of this edgekit plans
    accuracy = [_accuracy("train/model.pt", "torch", "float32", "float", top1 + 0.5),
                _accuracy("float/model.tflite", "litert", "float32", "float", top1 + 0.5),
                _accuracy("int8/ptq.tflite", "litert", "int8", "ptq", top1)]
    artifacts = [_artifact("float_tflite", "float/model.tflite", "float32", "float", tflite_bytes * 4),
                 _artifact("ptq_tflite", "int8/ptq.tflite", "int8", "ptq", tflite_bytes)]
    profiles = [_profile("float/model.tflite", HOST, host_ms * 2, None), _profile("int8/ptq.tflite", HOST, host_ms, 0.5),
                _profile("float/model.tflite", ARM, None, None, instructions=instructions * 3),
                _profile("int8/ptq.tflite", ARM, None, 0.33, instructions=instructions)]
    return {"schema_version": 2, "edgekit_version": "test", "recipe": recipe,
            "build": {"complete": complete, "stages_planned": stages, "stages_finished": stages if complete else stages[:2]},
            "stages": [{"name": name, "status": "ran", "seconds": 1.0, "key": "0" * 64} for name in stages],
            "model": {"arch": "mobilenet_v1", "alpha": alpha, "resolution": resolution, "num_classes": 10,
                      "macs": macs, "params": macs // 10},
            "accuracy": accuracy, "artifacts": artifacts, "profiles": profiles}


def _accuracy(artifact, runtime, precision, method, top1) -> dict:
    return {"artifact": artifact, "runtime": runtime, "precision": precision, "method": method,
            "dataset": "fashion_mnist/test", "device": "cpu", "threads": 1, "top1": top1, "top5": 99.0, "samples": 256}


def _artifact(name, path, precision, method, size) -> dict:
    return {"name": name, "path": path, "format": "tflite", "precision": precision, "method": method,
            "backend": "pt2e", "io": "int8", "bytes": size, "sha256": "a" * 64}


def _profile(artifact, device, ms, ratio, *, instructions=None) -> dict:
    emulated = instructions is not None
    typed = ({"metric": "instructions", "unit": "instructions", "value": instructions, "distribution": None,
              "obtained": "emulated"} if emulated else
             {"metric": "latency", "unit": "ms", "value": ms, "distribution": {"p50": ms, "p90": ms * 1.1},
              "obtained": "real"})
    return {"artifact": artifact, "device": device, "runtime": "litert", "delegate": "xnnpack", "threads": 1, **typed,
            "runs": 100, "seconds": 1.0, "ratio_to_float": ratio,
            "float_artifact": None if ratio is None else "float/model.tflite"}


def hand_sweep(failed: bool = True) -> dict:
    """sweep.json of the four points above (and a fifth that failed), as ``edgekit sweep`` writes it."""
    from edgekit.sweep.results import point_entry, sweep_document

    points = [point_entry(point_id, {"model.alpha": alpha, "model.resolution": resolution}, "done",
                          report=make_report(alpha, resolution), seconds=10.0)
              for point_id, (alpha, resolution) in zip(IDS, TABLE)]
    if failed:
        points.append(point_entry("alpha=1.0,resolution=32", {"model.alpha": 1.0, "model.resolution": 32}, "failed",
                                  error="training diverged at step 3", seconds=2.0))
    axes = [{"key": "model.alpha", "values": [0.25, 0.5, 1.0]}, {"key": "model.resolution", "values": [32, 64]}]
    return sweep_document("grid.yaml", axes, [], None, points)
