"""A tiny MobileNet v2 (α 0.35, 32 px, 100 steps on a Fashion-MNIST slice: ~59% top-1) quantized with both
backends and exported: every conv, the FC and the ten residual adds run as int8 kernels in LiteRT and
onnxruntime, the files agree with their torch graphs, and Qualcomm's HTP simulator takes the ONNX in strict
mode. Slow: trains, quantizes, converts and starts a simulator."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekit.data import BatchTransform, build_datasets
from edgekit.export import write_tflite
from edgekit.export.onnx import write_onnx
from edgekit.models import create_model
from edgekit.quantize import get_backend
from edgekit.quantize.algorithm import calibration_batches, ptq
from edgekit.recipe.schema import DataSection, TrainSection
from edgekit.runtimes import check_int8
from edgekit.train import configure_torch, train

pytestmark = pytest.mark.slow

RESOLUTION = 32
CONVS, FCS, ADDS = 52, 1, 10  # 35 ReLU6 convs + 17 linear projections; the classifier; stride-1 blocks of equal width
TEST_IMAGES = 64


@dataclass
class TinyV2:
    model: torch.nn.Module
    transform: BatchTransform
    images: torch.Tensor  # preprocessed test images, NCHW
    labels: np.ndarray
    folder: Path
    files: dict[str, Path]
    graphs: dict[str, torch.nn.Module]  # the backends' converted torch graphs


@pytest.fixture(scope="module")
def tiny_v2(tmp_path_factory) -> TinyV2:
    folder = tmp_path_factory.mktemp("mobilenet-v2")
    threads_before = torch.get_num_threads()
    configure_torch(1)
    torch.manual_seed(0)
    try:
        train_set, test_set = build_datasets(DataSection(max_train_samples=3200, max_eval_samples=TEST_IMAGES),
                                             RESOLUTION, seed=0)
        transform = BatchTransform(RESOLUTION, [0.5] * 3, [0.5] * 3, augment=False)
        model = create_model("mobilenet_v2", alpha=0.35, num_classes=10)
        config = TrainSection(epochs=1, batch_size=32, lr=0.01, device="cpu", threads=1, channels_last=False)
        train(model, train_set, transform, config, seed=0, checkpoint_path=folder / "train.pt", checkpoint_key="v2")
        model.eval()
        calibration = list(calibration_batches(train_set, transform, 32, 4, seed=0))
        example = calibration[0][:2]
        files = {"float.onnx": write_onnx(model, example, folder / "float.onnx", opset=17)}
        pt2e, nncf = get_backend("pt2e"), get_backend("nncf")
        pt2e_graph = ptq(pt2e, model, example, calibration, per_channel=True).converted
        files["pt2e.tflite"] = write_tflite(pt2e_graph, example, folder / "pt2e.tflite",
                                            **pt2e.export_options(pt2e_graph, "tflite"))
        files["pt2e.onnx"] = write_onnx(pt2e_graph, example, folder / "pt2e.onnx", opset=20,
                                        **pt2e.export_options(pt2e_graph, "onnx"))
        nncf_graph = ptq(nncf, model, example, calibration, per_channel=True).converted
        files["nncf.onnx"] = write_onnx(nncf_graph, example, folder / "nncf.onnx", opset=17,
                                        **nncf.export_options(nncf_graph, "onnx"))
    finally:
        torch.set_num_threads(threads_before)
    images = transform(test_set.load(torch.arange(len(test_set))))
    return TinyV2(model, transform, images, test_set.labels.numpy(), folder, files,
                  {"pt2e": pt2e_graph, "nncf": nncf_graph})


@pytest.mark.parametrize("file", ["pt2e.tflite", "pt2e.onnx", "nncf.onnx"])
def test_every_conv_and_residual_add_is_an_int8_kernel(tiny_v2, file):
    result = check_int8(tiny_v2.files[file])
    assert (result["int8"], result["float"], result["float_ops"]) == (CONVS + FCS + ADDS, 0, [])


def test_a_float_file_counts_float_kernels(tiny_v2):
    result = check_int8(tiny_v2.files["float.onnx"])
    # onnxruntime fuses each float residual add into the conv before it (FusedConv): no Add is left to count
    assert (result["int8"], result["float"]) == (0, CONVS + FCS)


@pytest.mark.parametrize("file, int8", [("pt2e.onnx", True), ("nncf.onnx", True), ("float.onnx", False)])
def test_openvino_counts_each_residual_add_by_the_layer_it_was_fused_into(tiny_v2, file, int8):
    """OpenVINO's CPU plugin fuses every residual add into the convolution before it (a sum post-op): the
    add is int8 exactly when that convolution runs in u8/i8."""
    pytest.importorskip("openvino", reason="the openvino extra is not installed (pip install edgekit[openvino])")
    result = check_int8(tiny_v2.files[file], "openvino")
    counted = (CONVS + FCS + ADDS, 0) if int8 else (0, CONVS + FCS + ADDS)
    assert (result["int8"], result["float"]) == counted, result["float_ops"][:5]
    if not int8:
        assert sum(op.startswith("Add(") and " in Convolution[f32]" in op for op in result["float_ops"]) == ADDS


def test_the_check_names_adds_left_in_float(tiny_v2, tmp_path):
    """The PT2E graph exported without write_onnx's uint8 activations: onnxruntime converts no int8 pair whose
    tensor feeds two consumers, so the ten adds (and the convs at each residual fan-out) stay float."""
    from edgekit.export.common import quiet

    raw = tmp_path / "int8_activations.onnx"
    with quiet():
        torch.onnx.export(tiny_v2.graphs["pt2e"], (tiny_v2.images[:2],), str(raw), dynamo=True, opset_version=20,
                          external_data=False)
    result = check_int8(raw)
    float_adds = [op for op in result["float_ops"] if op.startswith("Add(")]
    assert len(float_adds) == ADDS and not result["ok"] and result["int8"] + result["float"] == CONVS + FCS + ADDS


@pytest.mark.parametrize("file, backend", [("pt2e.tflite", "pt2e"), ("pt2e.onnx", "pt2e"), ("nncf.onnx", "nncf")])
def test_files_agree_with_their_torch_graph(tiny_v2, file, backend):
    from targets.conftest_models import reference_logits

    with torch.no_grad():
        expected = tiny_v2.graphs[backend](tiny_v2.images).numpy()
    logits = reference_logits(tiny_v2.files[file], tiny_v2.images.numpy())
    agreement = (logits.argmax(1) == expected.argmax(1)).mean()
    assert agreement >= 0.9, f"{file}: top-1 agreement {agreement:.2f} with its torch graph"
    accuracy = (logits.argmax(1) == tiny_v2.labels).mean()
    assert accuracy > 0.3, f"{file}: top-1 {accuracy:.2f}, the quantized model is broken (chance is 0.1)"


def test_qnn_htp_takes_the_int8_onnx_in_strict_mode(tiny_v2):
    """The build's own file, dynamic batch and all: the target pins the batch to 1 (the HTP compiles static
    shapes only), in the check and in the file it puts for the on-device script."""
    import onnx

    from edgekit.targets import make_target
    from targets.conftest_models import serve_or_skip
    from targets.test_qnn import SCRIPT, profile

    dynamic = tiny_v2.files["pt2e.onnx"]
    assert onnx.load(str(dynamic)).graph.input[0].type.tensor_type.shape.dim[0].dim_param, "expected a dynamic batch"
    inputs = tiny_v2.folder / "inputs.npz"
    np.savez(inputs, images=tiny_v2.images[:8].numpy().astype(np.float32), labels=tiny_v2.labels[:8])
    for htp in serve_or_skip(make_target(profile(), check_available=False), "qnn-htp"):
        report = htp.check(dynamic, inputs=inputs)
        assert report["batch_pinned_to_1"] is True
        assert report["strict"] == {"ok": True, "error": None} and report["coverage"]["fraction"] == 1.0
        assert "Add" in report["coverage"]["op_types"] and report["agreement"]["top1_agreement"] >= 0.75
        script, remote = htp.put(SCRIPT, "ondevice.py"), htp.put(dynamic, "v2_int8.onnx")
        result = htp.run(["python3", script, remote, "--provider", "qnn-htp", "--warmup", "1", "--min-runs", "2",
                          "--min-seconds", "0"], timeout=600)
        assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("file", ["pt2e.onnx", "nncf.onnx"])
def test_relu6_folds_into_the_int8_convs(tiny_v2, file, tmp_path):
    """No float Clip left between a DequantizeLinear and a QuantizeLinear once onnxruntime has fused the graph:
    the ReLU6 ranges start at 0, so the int8 kernels' own saturation clips."""
    import onnx

    from edgekit.runtimes.onnxruntime_rt import open_session, session_options

    optimised = tmp_path / "optimised.onnx"
    open_session(tiny_v2.files[file], session_options(1, optimized_model_path=optimised))
    op_types = [node.op_type for node in onnx.load(str(optimised), load_external_data=False).graph.node]
    assert "Clip" not in op_types and op_types.count("QLinearAdd") == ADDS
