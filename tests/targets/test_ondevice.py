"""The on-device script, run for real as a subprocess on float/int8 ONNX and TFLite models."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from targets.conftest_models import reference_logits

SCRIPT = Path(__file__).resolve().parents[2] / "edgekit" / "profile" / "ondevice.py"
FAST = ["--warmup", "2", "--min-runs", "5", "--max-runs", "8", "--min-seconds", "0"]
LATENCY_KEYS = {"p50", "p90", "p99", "mean", "std", "min"}
TOP_KEYS = {"model", "runtime", "runtime_version", "delegate", "threads", "latency_ms", "runs", "seconds", "init_ms",
            "first_inference_ms", "peak_rss_mb", "host", "accuracy", "outputs_file", "per_node",
            "instructions_per_inference", "harness_instructions"}
MODELS = {  # attribute of Models -> (runtime, delegate the runtime applies)
    "float_onnx": ("onnxruntime", "CPUExecutionProvider"),
    "int8_onnx": ("onnxruntime", "CPUExecutionProvider"),
    "float_tflite": ("litert", "XNNPACK"),
    "int8_tflite": ("litert", "XNNPACK"),
}



def run_script(*args, check=True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def result_of(done: subprocess.CompletedProcess) -> dict:
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", list(MODELS))
def test_every_field_and_accuracy_on_real_images(models, name, tmp_path):
    model = getattr(models, name)
    runtime, delegate = MODELS[name]
    outputs = tmp_path / "outputs.npy"
    result = result_of(run_script(model, *FAST, "--inputs", models.inputs_npz, "--save-outputs", outputs))

    assert set(result) == TOP_KEYS
    assert (result["model"], result["runtime"], result["delegate"], result["threads"]) == (model.name, runtime, delegate, 1)
    assert result["runtime_version"]
    assert set(result["latency_ms"]) == LATENCY_KEYS
    latency = result["latency_ms"]
    assert 0 < latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p99"] and latency["std"] >= 0
    assert 5 <= result["runs"] <= 8 and result["seconds"] > 0
    assert result["init_ms"] > 0 and result["first_inference_ms"] > 0 and result["peak_rss_mb"] > 10
    assert set(result["host"]) == {"machine", "cpu", "cores", "governor"} and result["host"]["cores"] >= 1
    assert result["per_node"] is None and result["instructions_per_inference"] is None

    data = np.load(models.inputs_npz)
    expected = reference_logits(model, data["images"])
    saved = np.load(outputs)
    assert result["outputs_file"] == str(outputs) and saved.shape == expected.shape
    np.testing.assert_allclose(saved, expected, atol=1e-4)
    top1 = float(np.mean(expected.argmax(1) == data["labels"]) * 100)
    assert result["accuracy"]["samples"] == len(data["labels"]) == 40
    assert result["accuracy"]["top1"] == pytest.approx(top1)
    assert result["accuracy"]["top1"] > 30  # trained: well above the 10% of chance
    assert result["accuracy"]["top1"] <= result["accuracy"]["top5"] <= 100


def test_random_inputs_without_npz_give_no_accuracy(models):
    result = result_of(run_script(models.int8_tflite, *FAST))
    assert result["accuracy"] is None and result["outputs_file"] is None and result["runs"] >= 5


def test_min_runs_is_exact_when_time_is_not_binding(models):
    result = result_of(run_script(models.float_onnx, "--warmup", "0", "--min-runs", "7", "--min-seconds", "0"))
    assert result["runs"] == 7


def test_max_runs_caps_a_long_minimum_time(models):
    result = result_of(run_script(models.float_onnx, "--warmup", "0", "--min-runs", "3", "--min-seconds", "60",
                                  "--max-runs", "4"))
    assert result["runs"] == 4 and result["seconds"] < 30


def test_min_seconds_keeps_running_past_min_runs(models):
    result = result_of(run_script(models.int8_tflite, "--warmup", "0", "--min-runs", "1", "--min-seconds", "0.3"))
    assert result["seconds"] >= 0.3 and result["runs"] > 1


def test_litert_delegate_none_runs_the_builtin_kernels(models):
    result = result_of(run_script(models.int8_tflite, *FAST, "--delegate", "none"))
    assert result["delegate"] == "none"


def test_per_node_table_on_onnxruntime(models):
    result = result_of(run_script(models.int8_onnx, *FAST, "--per-node"))
    table = result["per_node"]
    assert table and all(set(row) == {"name", "op_type", "ms"} and row["ms"] >= 0 for row in table)
    assert [row["ms"] for row in table] == sorted((row["ms"] for row in table), reverse=True)
    assert {"QLinearConv"} <= {row["op_type"] for row in table}  # QDQ Conv fused into int8 kernels
    # the mean per run of all nodes cannot exceed the slowest whole inference
    assert sum(row["ms"] for row in table) <= result["latency_ms"]["p99"] * 1.5


def test_per_node_on_litert_is_null_with_a_note(models):
    done = run_script(models.float_tflite, *FAST, "--per-node")
    assert result_of(done)["per_node"] is None and "--per-node needs onnxruntime" in done.stderr


def test_markers_without_the_plugin_report_no_times_and_no_count(models, monkeypatch):
    monkeypatch.delenv("EDGEKIT_INSN_FILE", raising=False)
    result = result_of(run_script(models.int8_tflite, *FAST, "--markers"))  # the marker syscall is ENOSYS here
    assert result["latency_ms"] is None and result["init_ms"] is None and result["instructions_per_inference"] is None


@pytest.mark.parametrize("suffix", [".onnx", ".tflite"])
def test_corrupt_model_fails_with_one_line(tmp_path, suffix):
    broken = tmp_path / f"broken{suffix}"
    broken.write_bytes(b"\x00not a model" * 64)
    done = run_script(broken, *FAST, check=False)
    assert done.returncode != 0 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ondevice: cannot load broken{suffix}: ")


def test_missing_model_and_bad_inputs_fail_with_one_line(tmp_path, models):
    done = run_script(tmp_path / "nope.onnx", check=False)
    assert done.returncode != 0 and done.stderr.strip() == f"ondevice: cannot load {tmp_path / 'nope.onnx'}: no such file"
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"junk")
    done = run_script(models.float_onnx, *FAST, "--inputs", bad, check=False)
    assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith(f"ondevice: cannot read inputs {bad}")


def test_script_is_self_contained():
    """It is copied alone to a board: standard library, numpy and the runtimes only; no edgekit, and torch
    only as what ExecuTorch's Python runtime takes its inputs in."""
    allowed = {"argparse", "contextlib", "ctypes", "json", "os", "platform", "resource", "shutil", "statistics", "sys", "tempfile", "time",
               "numpy", "onnxruntime", "onnxruntime_qnn", "ai_edge_litert", "tflite_runtime", "importlib",
               "openvino", "executorch", "torch"}
    tree = ast.parse(SCRIPT.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= allowed, imported - allowed


def test_per_node_leaves_no_temporary_directory(models, tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    done = subprocess.run([sys.executable, str(SCRIPT), str(models.int8_onnx), *FAST, "--per-node"], capture_output=True,
                          text=True, timeout=300, env={**__import__("os").environ, "TMPDIR": str(scratch)})
    assert done.returncode == 0, done.stderr
    # (other libraries may leave their own files there; the script's folder must be gone)
    assert result_of(done)["per_node"] and [path for path in scratch.iterdir() if path.name.startswith("ondevice-")] == []


def test_self_check_names_what_is_missing():
    done = run_script("--self-check", "onnxruntime,litert")
    assert json.loads(done.stdout)["missing"] == []
    bare = subprocess.run([sys.executable, "-I", "-S", str(SCRIPT), "--self-check", "onnxruntime"], capture_output=True,
                          text=True, timeout=60)
    report = json.loads(bare.stdout)
    assert bare.returncode == 1 and report["missing"][0].startswith("numpy (No module named 'numpy')")
    assert "ondevice: missing: numpy" in bare.stderr
