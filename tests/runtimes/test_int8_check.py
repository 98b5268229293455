"""check_int8 counts what the runtime executes; require_int8 turns float kernels into one error line."""

import pytest

from edgekit.errors import UserInputError
from edgekit.runtimes import Int8KernelError, check_int8, require_int8

# MobileNet v1: stem conv + 13 depthwise + 13 pointwise convs + the classifier.
KERNELS = 28


@pytest.mark.parametrize("file", ["int8.onnx", "int8.tflite", "int8_float_io.tflite"])
def test_int8_files_run_only_int8_kernels(built, file):
    result = check_int8(built.files[file])
    assert (result["int8"], result["float"], result["float_ops"], result["ok"]) == (KERNELS, 0, [], True)
    assert result["artifact"] == str(built.files[file])


@pytest.mark.parametrize("file, runtime", [("float.onnx", "onnxruntime"), ("float.tflite", "litert")])
def test_float_files_run_only_float_kernels(built, file, runtime):
    result = check_int8(built.files[file])
    assert (result["runtime"], result["int8"], result["float"], result["ok"]) == (runtime, 0, KERNELS, False)
    assert len(result["float_ops"]) == KERNELS


def test_require_int8_passes_int8_files(built):
    require_int8([check_int8(built.files["int8.onnx"]), check_int8(built.files["int8.tflite"])])


def test_require_int8_names_the_float_file_in_one_line(built):
    results = [check_int8(built.files[file]) for file in ("int8.onnx", "float.onnx", "float.tflite")]
    with pytest.raises(Int8KernelError) as caught:
        require_int8(results)
    message = str(caught.value)
    assert "\n" not in message and "int8.onnx" not in message
    assert f"{built.files['float.onnx']}: {KERNELS} of {KERNELS} convs/matmuls/adds run in float (onnxruntime)" in message
    assert f"{built.files['float.tflite']}: {KERNELS} of {KERNELS} convs/matmuls/adds run in float (litert)" in message


def test_require_int8_rejects_a_file_without_convs():
    empty = {"artifact": "empty.onnx", "runtime": "onnxruntime", "int8": 0, "float": 0, "float_ops": [], "ok": False}
    with pytest.raises(Int8KernelError, match="empty.onnx: no conv/matmul kernels found"):
        require_int8([empty])


def test_missing_file(tmp_path):
    with pytest.raises(UserInputError, match="missing.tflite: model file not found"):
        check_int8(tmp_path / "missing.tflite")
