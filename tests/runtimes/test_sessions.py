"""The Session contract, checked once per runtime and model file (a template class, subclassed per file)."""

import numpy as np
import pytest

from edgekit.errors import UserInputError
from edgekit.runtimes import get_runtime
from edgekit.runtimes.base import dequantize, quantize


class SessionContract:
    file: str
    runtime: str
    layout: str
    input_dtype: str
    int8: bool

    @pytest.fixture
    def session(self, built):
        return get_runtime(self.runtime).load(built.files[self.file], threads=1)

    def test_input_spec(self, session):
        spec = session.input_spec()
        assert (spec.layout, spec.dtype) == (self.layout, self.input_dtype)
        spatial = spec.shape[2:] if spec.layout == "NCHW" else spec.shape[1:3]
        assert spatial == (32, 32)
        assert (spec.quantization is not None) == (self.input_dtype == "int8")

    def test_output_grid_only_on_int8_files(self, session):
        assert (session.output_quantization() is not None) == self.int8

    def test_logits_match_the_torch_model(self, built, session, torch_logits):
        logits = session.run(built.images)
        assert logits.shape == torch_logits.shape and logits.dtype == np.float32
        if self.int8:
            # PTQ of a 100-step alpha-0.25 model: measured 0.93 (onnxruntime) and 0.95 (LiteRT) on 300 images.
            agreement = (logits.argmax(1) == torch_logits.argmax(1)).mean()
            assert agreement >= 0.85
        else:
            np.testing.assert_allclose(logits, torch_logits, atol=1e-3, rtol=1e-3)

    def test_any_batch_size_gives_the_same_logits(self, built, session):
        whole = session.run(built.images[:13])
        pieces = np.concatenate([session.run(built.images[:1]), session.run(built.images[1:8]),
                                 session.run(built.images[8:13])])
        np.testing.assert_allclose(pieces, whole, atol=1e-5)

    def test_wrong_input_shape_is_a_user_error(self, built, session):
        with pytest.raises(UserInputError, match=f"{built.files[self.file]}: the model wants"):
            session.run(built.images[:2, :, :16, :16])

    def test_describe_reports_what_runs(self, session):
        description = session.describe()
        assert description["runtime"] == self.runtime and description["threads"] == 1 and description["version"]


class TestFloatOnnx(SessionContract):
    file, runtime, layout, input_dtype, int8 = "float.onnx", "onnxruntime", "NCHW", "float32", False

    def test_provider(self, session):
        assert session.describe()["provider"] == "CPUExecutionProvider"


class TestInt8Onnx(SessionContract):
    # onnxruntime's QDQ model keeps float I/O; its logits come out of a DequantizeLinear, hence the grid.
    file, runtime, layout, input_dtype, int8 = "int8.onnx", "onnxruntime", "NCHW", "float32", True


class LiteRTContract(SessionContract):
    runtime = "litert"

    def test_xnnpack_delegate_is_applied(self, session):
        assert session.describe()["delegate"] == "XNNPACK"


class TestFloatTflite(LiteRTContract):
    file, layout, input_dtype, int8 = "float.tflite", "NCHW", "float32", False


class TestInt8Tflite(LiteRTContract):
    file, layout, input_dtype, int8 = "int8.tflite", "NHWC", "int8", True

    def test_int8_io_is_quantized_and_dequantized(self, built, session):
        """run() equals driving the interpreter by hand: quantize, NCHW -> NHWC, invoke, dequantize."""
        from ai_edge_litert.interpreter import Interpreter

        spec, grid = session.input_spec(), session.output_quantization()
        interpreter = Interpreter(model_path=str(built.files[self.file]), num_threads=1)
        interpreter.allocate_tensors()
        by_hand = []
        for image in built.images[:20]:
            quantized = quantize(image.transpose(1, 2, 0)[None], spec.quantization, np.dtype(np.int8))
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], quantized)
            interpreter.invoke()
            by_hand.append(dequantize(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]), grid))
        logits = session.run(built.images[:20])
        np.testing.assert_array_equal(logits, np.concatenate(by_hand))
        steps = logits / grid[0] + grid[1]
        np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)


class TestInt8TfliteWithFloatIO(LiteRTContract):
    """``export.tflite_io: float32``: the int8 file rewritten with a QUANTIZE in front and a DEQUANTIZE behind."""

    file, layout, input_dtype, int8 = "int8_float_io.tflite", "NHWC", "float32", True

    def test_logits_are_bit_identical_to_the_int8_io_file(self, built, session):
        int8_io = get_runtime("litert").load(built.files["int8.tflite"], threads=1)
        assert session.output_quantization() == int8_io.output_quantization()
        np.testing.assert_array_equal(session.run(built.images), int8_io.run(built.images))

    def test_the_file_takes_and_gives_float32_in_the_interpreter_itself(self, built):
        from ai_edge_litert.interpreter import Interpreter

        rewritten = Interpreter(model_path=str(built.files[self.file]), num_threads=1)
        original = Interpreter(model_path=str(built.files["int8.tflite"]), num_threads=1)
        # Listed before allocation, so before the delegate replaces the ops.
        ops = [op["op_name"] for op in original._get_ops_details()]
        assert [op["op_name"] for op in rewritten._get_ops_details()] == ["QUANTIZE", *ops, "DEQUANTIZE"]
        for detail in (*rewritten.get_input_details(), *rewritten.get_output_details()):
            assert detail["dtype"] == np.float32 and detail["quantization"] == (0.0, 0)
        # Same tensor names and signature keys as the int8-I/O file: app code written for one finds the other.
        assert rewritten.get_input_details()[0]["name"] == original.get_input_details()[0]["name"]
        assert rewritten.get_signature_list() == original.get_signature_list()
        runner = rewritten.get_signature_runner()
        (input_key,), (output_key,) = runner.get_input_details(), runner.get_output_details()
        image = np.ascontiguousarray(built.images[:1].transpose(0, 2, 3, 1))
        logits = runner(**{input_key: image})[output_key]
        assert logits.dtype == np.float32 and logits.shape == (1, 10)


def test_batch_fixed_at_one_runs_image_by_image(built, batch_one_onnx, torch_logits):
    session = get_runtime("onnxruntime").load(batch_one_onnx, threads=1)
    assert session.input_spec().shape[0] == 1
    np.testing.assert_allclose(session.run(built.images[:9]), torch_logits[:9], atol=1e-3, rtol=1e-3)


def test_onnx_int8_io_uses_the_dequantize_and_quantize_nodes_at_the_edges(tmp_path):
    """A hand-made ONNX with int8 input and output: int8 -> DequantizeLinear -> Relu -> QuantizeLinear -> int8."""
    import onnx
    from onnx import TensorProto, helper

    constants = [helper.make_tensor("in_scale", TensorProto.FLOAT, [], [0.05]),
                 helper.make_tensor("in_zero", TensorProto.INT8, [], [-3]),
                 helper.make_tensor("out_scale", TensorProto.FLOAT, [], [0.02]),
                 helper.make_tensor("out_zero", TensorProto.INT8, [], [-128])]
    nodes = [helper.make_node("DequantizeLinear", ["image", "in_scale", "in_zero"], ["real"]),
             helper.make_node("Relu", ["real"], ["positive"]),
             helper.make_node("QuantizeLinear", ["positive", "out_scale", "out_zero"], ["logits"])]
    graph = helper.make_graph(nodes, "int8_io", [helper.make_tensor_value_info("image", TensorProto.INT8, ["n", 3, 4, 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.INT8, ["n", 3, 4, 4])], constants)
    path = tmp_path / "int8_io.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))

    session = get_runtime("onnxruntime").load(path, threads=1)
    spec = session.input_spec()
    assert (spec.dtype, spec.layout, spec.quantization) == ("int8", "NCHW", (pytest.approx(0.05), -3))
    assert session.output_quantization() == (pytest.approx(0.02), -128)
    images = np.random.default_rng(0).uniform(-2, 2, (5, 3, 4, 4)).astype(np.float32)
    expected = np.clip(np.round(np.maximum(np.round(images / 0.05) * 0.05, 0) / 0.02), 0, 255) * 0.02
    np.testing.assert_allclose(session.run(images), expected, atol=1e-6)
