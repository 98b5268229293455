"""Reports from a real tiny build, and a full report derived from a copy of it.

Today's pipeline writes training and the torch float accuracy. To exercise the int8, artifact,
kernel-check and profile sections, ``full_report`` adds entries derived from the real ones (an int8
entry is the real float entry with precision int8 and top-1 lowered by ``INT8_DROP``). When the
pipeline writes those sections itself, the real report carries them and the same tests read them.
tests/gate/conftest.py loads this file for the same helpers; one session runs one build.
"""

from __future__ import annotations

import copy
import hashlib
import json
import platform
from pathlib import Path

import pytest

INT8_DROP = 0.5  # points of top-1 the derived int8 entries lose against float
HOST, ARM = "host", "cortex-a76 (qemu)"

def real_build(tmp_path_factory) -> tuple[dict, Path]:
    """(report, build dir) of one real tiny build per test session.

    The build directory lives at a fixed place under the session's base temp dir, so tests/gate (which
    loads this file as its own module) reuses the same build: a second call only reads report.json.
    """
    out_dir = tmp_path_factory.getbasetemp() / "tiny-report-build"
    if not (out_dir / "report.json").is_file():
        from edgekit.pipeline import build
        from edgekit.recipe import validate

        recipe = validate({
            "name": "tiny-report",
            "model": {"alpha": 0.25, "resolution": 32, "num_classes": 10},
            "data": {"max_train_samples": 1024, "max_eval_samples": 128},
            "train": {"epochs": 2, "batch_size": 64, "lr": 0.01, "threads": 1},
            "quantize": {"epochs": 0.25, "calibration_batches": 2},
            "evaluate": {"threads": 1},
            # Profiling is exercised for real in tests/profiling; here the profiles are derived (see above)
            # so that the page shows a real and an emulated device without building an ARM sysroot.
            "profile": {"devices": []},
        }, source="<test>")
        build(recipe, out_dir, log=lambda _: None)
    return json.loads((out_dir / "report.json").read_text()), out_dir


def derive_full_report(real: dict, out_dir: Path, *, int8_drop: float = INT8_DROP) -> dict:
    """A copy of ``real`` with every optional section present: sections the build wrote stay real, the
    others are derived from its real float entry and model file."""
    report = copy.deepcopy(real)
    (float_entry,) = [e for e in real["accuracy"] if e["runtime"] == "torch" and e["precision"] == "float32"]
    torch_bytes = (out_dir / float_entry["artifact"]).stat().st_size
    report.setdefault("environment", _environment())
    report.setdefault("qat", {"backend": "pt2e", "history": [
        {**point, "loss": point["loss"] * 0.9} for point in real["training"]["history"]]})
    report.setdefault("artifacts", derived_artifacts(float_entry["artifact"], torch_bytes, out_dir))
    if not any(entry["precision"] == "int8" for entry in real["accuracy"]):
        report["accuracy"] += derived_accuracy(float_entry, int8_drop)
    report.setdefault("int8_kernels", [
        {"artifact": "model_int8.onnx", "runtime": "onnxruntime", "int8": 15, "float": 0, "float_ops": [], "ok": True},
        {"artifact": "model_int8.tflite", "runtime": "litert", "int8": 15, "float": 0, "float_ops": [], "ok": True},
    ])
    if not report.get("profiles"):
        report["profiles"] = _onto_real_artifacts(derived_profiles(), report["accuracy"])
    return report


def _onto_real_artifacts(profiles: list[dict], accuracy: list[dict]) -> list[dict]:
    """Point the derived profiles at the build's real files where the build exported them."""
    real = {}
    for entry in accuracy:
        if entry["runtime"] == "onnxruntime" and entry["method"] in ("float", "qat"):
            real["model_float.onnx" if entry["method"] == "float" else "model_int8.onnx"] = entry["artifact"]
        if entry["runtime"] == "litert" and entry["method"] == "qat":
            real["model_int8.tflite"] = entry["artifact"]
    for profile in profiles:
        for key in ("artifact", "float_artifact"):
            profile[key] = real.get(profile[key], profile[key])
    return profiles


def derived_artifacts(torch_path: str, torch_bytes: int, out_dir: Path) -> list[dict]:
    return [
        _artifact("float_model", torch_path, "torch", "float32", "float", torch_bytes, out_dir),
        _artifact("model_float.onnx", "export/model_float.onnx", "onnx", "float32", "float", torch_bytes),
        _artifact("model_int8.onnx", "export/model_int8.onnx", "onnx", "int8", "qat", torch_bytes // 4),
        _artifact("model_int8.tflite", "export/model_int8.tflite", "tflite", "int8", "qat", torch_bytes // 4),
    ]


def derived_accuracy(float_entry: dict, int8_drop: float) -> list[dict]:
    """A float onnxruntime entry and two int8 entries (top-1 lowered by ``int8_drop``) from the real float one."""
    lowered = max(float_entry["top1"] - int8_drop, 0.0)
    agreement = {"reference": "model_float.onnx", "top1_agreement": 0.992, "max_diff": 4, "unit": "LSB",
                 "samples": float_entry["samples"]}
    return [
        {**float_entry, "artifact": "model_float.onnx", "runtime": "onnxruntime", "threads": 1},
        {**float_entry, "artifact": "model_int8.onnx", "runtime": "onnxruntime", "precision": "int8",
         "method": "qat", "top1": lowered, "agreement": agreement},
        # litert has no float entry: the gate compares it with the torch float model
        {**float_entry, "artifact": "model_int8.tflite", "runtime": "litert", "precision": "int8",
         "method": "qat", "top1": lowered},
    ]


def derived_profiles() -> list[dict]:
    """Real-device profiles on the host and emulated ones (instruction counts, no latency) on an ARM core."""
    return [
        _profile("model_float.onnx", HOST, "onnxruntime", 1.0, None, None),
        _profile("model_int8.onnx", HOST, "onnxruntime", 0.7, 0.7, "model_float.onnx"),
        _profile("model_int8.tflite", HOST, "litert", 0.6, None, None),
        _profile("model_float.onnx", ARM, "onnxruntime", None, None, None, instructions=7_810_000),
        _profile("model_int8.onnx", ARM, "onnxruntime", None, 0.315, "model_float.onnx", instructions=2_460_000),
    ]


def _environment() -> dict:
    import numpy
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}


def _artifact(name, path, fmt, precision, method, size, out_dir: Path | None = None) -> dict:
    digest = (hashlib.sha256((out_dir / path).read_bytes()).hexdigest() if out_dir
              else hashlib.sha256(f"derived {name}".encode()).hexdigest())
    return {"name": name, "path": path, "format": fmt, "precision": precision, "method": method,
            "backend": None if method == "float" else "pt2e", "bytes": size, "sha256": digest}


def _profile(artifact, device, runtime, p50_ms, ratio, float_artifact, *, instructions=None, threads=1) -> dict:
    """A profile entry in the current shape: one typed measurement and the context it was measured in."""
    emulated = instructions is not None
    latency = None if emulated else {"p50": p50_ms, "p90": p50_ms * 1.1, "p99": p50_ms * 1.3,
                                     "mean": p50_ms * 1.02, "std": p50_ms * 0.05, "min": p50_ms * 0.95}
    layers = [("features.stem.conv", "Conv"), ("features.block1.dw.conv", "Conv"), ("classifier", "Gemm")]
    # per-node times come from real devices only (onnxruntime's node profile, benchmark_model over adb)
    per_node = None if emulated else [{"name": name, "op_type": op, "ms": p50_ms / (i + 2)}
                                      for i, (name, op) in enumerate(layers)]
    typed = ({"metric": "instructions", "unit": "instructions", "value": instructions, "distribution": None,
              "obtained": "emulated"} if emulated else
             {"metric": "latency", "unit": "ms", "value": p50_ms, "distribution": latency, "obtained": "real"})
    return {"artifact": artifact, "device": device, "runtime": runtime,
            "delegate": "xnnpack" if runtime == "litert" else "cpu", "threads": threads, **typed,
            "runs": 200 if not emulated else 5, "seconds": 2.5, "init_ms": 12.0, "first_inference_ms": 3.0,
            "peak_rss_mb": 80.5, "host": {"cpu": platform.machine(), "cores": 2},
            "ratio_to_float": ratio, "float_artifact": float_artifact, "per_node": per_node}


def write_report(report: dict, path: Path) -> Path:
    path.write_text(json.dumps(report, indent=2))
    return path


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> tuple[dict, Path]:
    return real_build(tmp_path_factory)


@pytest.fixture
def emulated_device() -> str:
    return ARM


@pytest.fixture
def real_report(built) -> dict:
    """The real build's report.json, as the pipeline wrote it (a fresh copy per test)."""
    return copy.deepcopy(built[0])


@pytest.fixture
def full_report(built) -> dict:
    """A copy of the real report with every optional section derived from its real entries."""
    report, out_dir = built
    return derive_full_report(report, out_dir)
