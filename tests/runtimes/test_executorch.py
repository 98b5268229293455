"""The executorch format and runtime on the session's real model (tests/runtimes/conftest.py ``built``): float
and int8 .pte written by edgekit's writer (the int8 one from the same PT2E graph as int8.tflite), the Session
contract, accuracy next to LiteRT on that model, the int8 check, one XNNPACK delegate."""

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("executorch.runtime", reason="ExecuTorch is not installed (pip install 'edgekit[executorch]')")

from edgekit.export import ExportError  # noqa: E402
from edgekit.export.executorch import RESHAPES  # noqa: E402
from edgekit.formats import format_for_path, get_format  # noqa: E402
from edgekit.runtimes import check_int8, evaluate_file, get_runtime  # noqa: E402

from runtimes.extra_runtimes import assert_rejected_in_one_line, profile_here  # noqa: E402
from runtimes.test_sessions import SessionContract  # noqa: E402

# MobileNet v1: stem conv + 13 depthwise + 13 pointwise convs + the classifier.
KERNELS = 28


@pytest.fixture(scope="module")
def pte_files(built, tmp_path_factory) -> dict[str, Path]:
    """float.pte from the float model, int8.pte from the PT2E graph behind int8.tflite, written as the export
    stages write them (``ExportFormat.write``); added to ``built.files`` for the Session contract."""
    folder = tmp_path_factory.mktemp("executorch")
    fmt = get_format("executorch")
    example = torch.from_numpy(built.images[:2])
    files = {"float.pte": fmt.write(built.model, example, folder / "float.pte", None, "float32"),
             "int8.pte": fmt.write(built.quantized_graph, example, folder / "int8.pte", None, "int8")}
    built.files.update(files)
    return files


class ExecuTorchContract(SessionContract):
    @pytest.fixture
    def session(self, built, pte_files):
        return get_runtime(self.runtime).load(pte_files[self.file], threads=1)

    def test_one_xnnpack_delegate(self, session):
        assert (session.describe()["delegate"], session.describe()["delegate_partitions"]) == ("XNNPACK", 1)


class TestFloatPte(ExecuTorchContract):
    file, runtime, layout, input_dtype, int8 = "float.pte", "executorch", "NCHW", "float32", False


class TestInt8Pte(ExecuTorchContract):
    file, runtime, layout, input_dtype, int8 = "int8.pte", "executorch", "NCHW", "float32", True

    def test_agrees_with_the_pt2e_graph_it_was_lowered_from(self, built, session):
        """Within 16 output steps, as the build's own agreement tests allow (measured: 4 on these images)."""
        with torch.no_grad():
            reference = built.quantized_graph(torch.from_numpy(built.images[:64])).numpy()
        logits = session.run(built.images[:64])
        scale, _ = session.output_quantization()
        assert np.abs(logits - reference).max() <= 16 * scale
        assert (logits.argmax(1) == reference.argmax(1)).mean() >= 0.95


def test_the_format_table_knows_pte_and_leaves_it_out_of_the_default_formats():
    from edgekit.recipe.schema import ExportSection

    assert format_for_path("model.pte").runtimes == ("executorch",)
    assert "executorch" not in ExportSection().formats


def test_a_recipe_adds_the_format_and_both_runtimes_through_set(tmp_path):
    """The issue's way in: the default recipe with the new format and runtimes added by --set."""
    from edgekit.quantize import resolve_backend
    from edgekit.recipe import load_recipe

    recipe = load_recipe(Path(__file__).parents[2] / "recipes/mobilenet_0.5_160.yaml", [
        "export.formats=[tflite, onnx, executorch]", "evaluate.runtimes=[onnxruntime, litert, openvino, executorch]"])
    assert recipe.export.formats == ["tflite", "onnx", "executorch"] and recipe.export.require_int8_kernels
    assert resolve_backend(recipe.quantize.backend, recipe.export.formats) == "pt2e"


def test_int8_accuracy_matches_litert_on_the_same_model(built, pte_files):
    """Issue 13: within 0.1 points of LiteRT on the same int8 (PT2E PTQ) model, 300 Fashion-MNIST test images."""
    scores = {runtime: evaluate_file(built.files[file], runtime, built.test_set, built.transform, threads=1,
                                     batch_size=64)
              for runtime, file in (("litert", "int8.tflite"), ("executorch", "int8.pte"))}
    assert scores["executorch"]["samples"] == scores["litert"]["samples"] == len(built.test_set)
    assert abs(scores["executorch"]["top1"] - scores["litert"]["top1"]) <= 0.1
    assert scores["executorch"]["top1"] > 50  # a trained model, not chance (10 classes)


def test_int8_check_every_conv_and_linear_delegated_and_quantized(pte_files):
    result = check_int8(pte_files["int8.pte"])
    assert (result["runtime"], result["int8"], result["float"], result["ok"]) == ("executorch", KERNELS, 0, True)


def test_int8_check_fails_a_float_file(pte_files):
    result = check_int8(pte_files["float.pte"], "executorch")
    assert (result["int8"], result["float"], result["ok"]) == (0, KERNELS, False)
    assert all("xnn_datatype_fp32" in op for op in result["float_ops"])


class _PoolWithoutKeepdim(torch.nn.Module):
    """mean over H, W without keepdim: XNNPACK takes no such mean, so the graph splits around it."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = torch.nn.Conv2d(3, 8, 3), torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


@pytest.mark.slow  # an export
def test_a_graph_that_splits_into_two_delegates_is_refused(tmp_path):
    path = tmp_path / "split.pte"
    with pytest.raises(ExportError, match=r"split.pte: the model lowers to 2 XNNPACK delegates and leaves "
                                          r"aten.mean.dim outside") as caught:
        get_format("executorch").write(_PoolWithoutKeepdim().eval(), torch.randn(2, 3, 16, 16), path, None, "float32")
    assert "\n" not in str(caught.value) and not path.exists()


def test_a_file_executorch_rejects_is_one_line(tmp_path):
    assert_rejected_in_one_line("executorch", tmp_path / "broken.pte", "ExecuTorch cannot load it")


def test_host_profiling_measures_pte_files(pte_files):
    entries = profile_here(pte_files["float.pte"], pte_files["int8.pte"], {"executorch": ["xnnpack"]})
    assert [(Path(entry["artifact"]).name, entry["runtime"]) for entry in entries] == [
        ("float.pte", "executorch"), ("int8.pte", "executorch")]
    assert all((entry["metric"], entry["obtained"], entry["delegate_applied"]) == ("latency", "real", "XNNPACK")
               for entry in entries)
    assert entries[1]["ratio_to_float"] > 0


class _PooledHead(torch.nn.Module):
    """conv, ReLU, a global pool over 4x4 and a reshape before the classifier, as MobileNet v1 above 32x32."""

    def __init__(self):
        super().__init__()
        self.conv, self.pool, self.fc = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Linear(8, 4)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv(x)))
        return self.fc(x.reshape(x.shape[0], -1))


def _reshapes_between_grids(graph_module) -> int:
    """dequantize(a) -> reshape -> quantize(b) with a != b in a PT2E graph."""
    quantize = torch.ops.quantized_decomposed.quantize_per_tensor.default
    dequantize = torch.ops.quantized_decomposed.dequantize_per_tensor.default
    return sum(1 for node in graph_module.graph.nodes
               if node.target in RESHAPES and node.args[0].target == dequantize
               and all(user.target == quantize and user.args[1:] != node.args[0].args[1:] for user in node.users))


@pytest.mark.slow  # PT2E quantization and an export
def test_an_int8_reshape_between_two_grids_still_lowers_to_one_loadable_delegate(tmp_path):
    """The PT2E quantizer gives the pooled features and the classifier's input their own grids; XNNPACK
    refuses a reshape between two grids at load time unless the writer requantizes first."""
    from edgekit.quantize import get_backend
    from edgekit.quantize.algorithm import ptq

    torch.manual_seed(0)
    calibration = [torch.randn(16, 3, 4, 4) for _ in range(2)]
    converted = ptq(get_backend("pt2e"), _PooledHead().eval(), calibration[0][:2], calibration, per_channel=True).converted
    assert _reshapes_between_grids(converted) == 1  # the case this test is about
    path = get_format("executorch").write(converted, calibration[0][:2], tmp_path / "head.pte", None, "int8")
    session = get_runtime("executorch").load(path, threads=1)
    with torch.no_grad():
        reference = converted(calibration[1]).numpy()
    scale, _ = session.output_quantization()
    assert np.abs(session.run(calibration[1].numpy()) - reference).max() <= 4 * scale  # measured: 2
    assert check_int8(path)["ok"] and session.describe()["delegate_partitions"] == 1


def test_a_second_thread_count_while_a_session_is_open_is_refused(pte_files):
    """XNNPACK keeps the thread pool a program was loaded with: resizing it under an open session crashed."""
    from edgekit.runtimes import RuntimeFailure

    session = get_runtime("executorch").load(pte_files["int8.pte"], threads=1)
    with pytest.raises(RuntimeFailure, match="ExecuTorch has one thread pool per process and sessions with 1 threads"):
        get_runtime("executorch").load(pte_files["int8.pte"], threads=2)
    assert session.run(np.zeros((1, 3, 32, 32), np.float32)).shape == (1, 10)
