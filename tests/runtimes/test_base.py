"""Registry, suffix dispatch, helpers and the errors a user sees for bad input."""

import sys

import numpy as np
import pytest

from edgekit.errors import UserInputError
from edgekit.runtimes import RuntimeFailure, RuntimeUnavailable, check_int8, get_runtime, list_runtimes, runtime_for
from edgekit.runtimes.base import dequantize, guess_layout, quantize


def test_registry_knows_the_built_in_runtimes():
    assert list_runtimes() == ["executorch", "litert", "onnxruntime", "openvino"]
    assert get_runtime("onnxruntime").name == "onnxruntime"
    assert get_runtime("litert").name == "litert"


def test_unknown_runtime_name_suggests_a_close_match():
    with pytest.raises(UserInputError, match="unknown runtime 'litrt'.*did you mean 'litert'"):
        get_runtime("litrt")


@pytest.mark.parametrize("name, runtime", [("a.onnx", "onnxruntime"), ("b.TFLITE", "litert")])
def test_runtime_for_picks_by_suffix(name, runtime):
    assert runtime_for(name).name == runtime


def test_runtime_for_rejects_an_unknown_suffix():
    with pytest.raises(UserInputError, match=r"model\.pt: no runtime runs '\.pt' files"):
        runtime_for("model.pt")


@pytest.mark.parametrize("runtime", ["onnxruntime", "litert"])
def test_missing_file_names_it(tmp_path, runtime):
    missing = tmp_path / "missing.model"
    with pytest.raises(UserInputError, match=f"{missing}: model file not found"):
        get_runtime(runtime).load(missing, threads=1)


@pytest.mark.parametrize("threads", [0, -1, 1.5, True])
def test_threads_must_be_a_positive_integer(built, threads):
    with pytest.raises(UserInputError, match="threads must be an integer >= 1"):
        get_runtime("onnxruntime").load(built.files["float.onnx"], threads=threads)


@pytest.mark.parametrize("source, broken", [("float.onnx", "broken.onnx"), ("float.tflite", "broken.tflite")])
def test_truncated_file_is_a_one_line_error_naming_it(built, tmp_path, source, broken):
    path = tmp_path / broken
    path.write_bytes(built.files[source].read_bytes()[:20_000])
    for attempt in (lambda: runtime_for(path).load(path, threads=1), lambda: check_int8(path)):
        with pytest.raises(RuntimeFailure) as caught:
            attempt()
        message = str(caught.value)
        assert message.startswith(f"{path}: ") and "\n" not in message


@pytest.mark.parametrize("module", ["onnxruntime"])
def test_missing_onnxruntime_package_says_what_to_install(built, monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(RuntimeUnavailable, match="pip install onnxruntime"):
        get_runtime("onnxruntime").load(built.files["float.onnx"], threads=1)


def test_missing_litert_package_says_what_to_install(built, monkeypatch):
    for module in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(RuntimeUnavailable, match="pip install ai-edge-litert"):
        get_runtime("litert").load(built.files["float.tflite"], threads=1)


@pytest.mark.parametrize("shape, layout", [
    ((1, 3, 224, 224), "NCHW"), ((None, 3, 96, 96), "NCHW"), ((1, 96, 96, 3), "NHWC"), ((1, 1, 28, 28), "NCHW"),
    ((1, 8, 8, 8), "fallback"), ((10, 3), "fallback"),
])
def test_guess_layout(shape, layout):
    assert guess_layout(shape, "fallback") == layout


def test_quantize_rounds_half_away_from_zero_and_saturates():
    values = np.array([-1000.0, -0.25, -0.15, 0.05, 0.15, 0.25, 1000.0], dtype=np.float32)
    quantized = quantize(values, (0.1, 3), np.dtype(np.int8))
    assert quantized.tolist() == [-128, 0, 1, 4, 5, 6, 127]
    assert dequantize(np.array([3, 13], dtype=np.int8), (0.1, 3)).tolist() == pytest.approx([0.0, 1.0])
