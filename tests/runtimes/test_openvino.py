"""The openvino runtime on the session's real ONNX files (tests/runtimes/conftest.py ``built``): the Session
contract, accuracy next to onnxruntime on the same int8 file, the int8 check from runtime precisions,
float held at f32."""

from pathlib import Path

import pytest

pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'edgekit[openvino]')")

from edgekit.runtimes import check_int8, evaluate_file, get_runtime  # noqa: E402
from edgekit.runtimes.openvino_rt import OpenVINORuntime  # noqa: E402

from runtimes.extra_runtimes import assert_rejected_in_one_line, profile_here  # noqa: E402
from runtimes.test_sessions import SessionContract  # noqa: E402

# MobileNet v1: stem conv + 13 depthwise + 13 pointwise convs + the classifier.
KERNELS = 28


class TestOpenVINOFloatOnnx(SessionContract):
    file, runtime, layout, input_dtype, int8 = "float.onnx", "openvino", "NCHW", "float32", False

    def test_float_is_held_at_f32(self, session):
        assert session.describe()["float_precision"] == "f32"


class TestOpenVINOInt8Onnx(SessionContract):
    file, runtime, layout, input_dtype, int8 = "int8.onnx", "openvino", "NCHW", "float32", True

    def test_output_grid_is_the_onnx_files(self, built, session):
        assert session.output_quantization() == get_runtime("onnxruntime").load(
            built.files["int8.onnx"], threads=1).output_quantization()


def test_int8_accuracy_matches_onnxruntime_on_the_same_file(built):
    """Issue 13: within 0.1 points of onnxruntime on the same int8 model (300 Fashion-MNIST test images)."""
    scores = {runtime: evaluate_file(built.files["int8.onnx"], runtime, built.test_set, built.transform, threads=1,
                                     batch_size=64) for runtime in ("onnxruntime", "openvino")}
    assert scores["openvino"]["samples"] == scores["onnxruntime"]["samples"] == len(built.test_set)
    assert abs(scores["openvino"]["top1"] - scores["onnxruntime"]["top1"]) <= 0.1
    assert scores["openvino"]["top1"] > 50  # a trained model, not chance (10 classes)


def test_int8_check_reads_runtime_precisions(built):
    result = check_int8(built.files["int8.onnx"], "openvino")
    assert (result["runtime"], result["int8"], result["float"], result["ok"]) == ("openvino", KERNELS, 0, True)


def test_int8_check_fails_a_float_file(built):
    result = check_int8(built.files["float.onnx"], "openvino")
    assert (result["int8"], result["float"], result["ok"]) == (0, KERNELS, False)
    assert all(op.endswith("[f32]") for op in result["float_ops"])


def test_bf16_only_when_asked(built):
    import openvino

    if "BF16" not in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no bf16: the hint changes nothing here")
    _, float_ops = OpenVINORuntime(precision="bf16").count_int8_kernels(built.files["float.onnx"])
    assert len(float_ops) == KERNELS and all(op.endswith("[bf16]") for op in float_ops)
    session = OpenVINORuntime(precision="bf16").load(built.files["float.onnx"], threads=1)
    assert session.describe()["float_precision"] == "bf16"


def test_a_file_openvino_rejects_is_one_line(tmp_path):
    assert_rejected_in_one_line("openvino", tmp_path / "broken.onnx", "OpenVINO cannot load it")


def test_host_profiling_measures_each_onnx_in_openvino_beside_onnxruntime(built):
    entries = profile_here(built.files["float.onnx"], built.files["int8.onnx"],
                           {"onnxruntime": ["cpu"], "openvino": ["cpu"]})
    assert sorted((Path(entry["artifact"]).name, entry["runtime"]) for entry in entries) == [
        ("float.onnx", "onnxruntime"), ("float.onnx", "openvino"), ("int8.onnx", "onnxruntime"), ("int8.onnx", "openvino")]
    for entry in (entry for entry in entries if entry["runtime"] == "openvino"):
        assert (entry["metric"], entry["obtained"], entry["threads"]) == ("latency", "real", 1)
        assert entry["delegate_applied"] == "CPU (f32)" and entry["value"] > 0
    int8_entry = next(entry for entry in entries if entry["runtime"] == "openvino" and "int8" in entry["artifact"])
    assert int8_entry["ratio_to_float"] > 0 and int8_entry["float_artifact"] == str(built.files["float.onnx"])
