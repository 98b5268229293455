"""Error per layer read inside LiteRT and onnxruntime, named by the model's layers; a spoiled conv is found;
keep_float names are resolved against the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgekit.errors import UserInputError
from edgekit.models.layers import layer_names
from edgekit.runtimes import check_int8, get_runtime
from edgekit.runtimes.per_layer import (MAX_SQNR_DB, PerLayerError, error_metrics, match_layers, model_layers,
                                        onnx_layer_outputs, per_layer_errors, worst_layers)

RESOLUTION = 32
SAMPLES = 64
FILES = (("int8.tflite", "litert"), ("int8.onnx", "onnxruntime"))


def _export_pt2e(model, calibration, folder: Path, keep_float=()) -> dict[str, Path]:
    """The product's path: PT2E PTQ, then write_tflite and write_onnx of the one converted graph."""
    from edgekit.export import write_tflite
    from edgekit.export.onnx import write_onnx
    from edgekit.quantize import get_backend
    from edgekit.quantize.algorithm import ptq

    backend = get_backend("pt2e")
    example = calibration[:2]
    quantized = ptq(backend, model, example, list(calibration.split(32)), per_channel=True, keep_float=keep_float)
    tflite = write_tflite(quantized.converted, example, folder / "int8.tflite",
                          **backend.export_options(quantized.converted, "tflite"))
    onnx_file = write_onnx(quantized.converted, example, folder / "int8.onnx", opset=17)
    return {"int8.tflite": tflite, "int8.onnx": onnx_file}


@pytest.fixture(scope="module")
def pt2e_files(tmp_path_factory, trained_tiny):
    torch.set_num_threads(1)
    calibration = trained_tiny.transform(trained_tiny.train_set.load(torch.arange(64)))
    return _export_pt2e(trained_tiny.model(), calibration, tmp_path_factory.mktemp("per-layer"))


@pytest.fixture(scope="module")
def images(trained_tiny) -> np.ndarray:
    return trained_tiny.transform(trained_tiny.test_set.load(torch.arange(SAMPLES))).numpy()


@pytest.mark.parametrize("name, runtime", FILES)
def test_every_conv_and_fc_is_named_in_forward_order(pt2e_files, images, trained_tiny, name, runtime):
    model = trained_tiny.model()
    records = per_layer_errors(pt2e_files[name], runtime, model, images)
    assert [record["layer"] for record in records] == layer_names(model)  # 27 convs + the classifier
    assert len(records) == 28 and records[7]["layer"] == "features.block4.dw.conv"
    assert [record["op"] for record in records[:3]] == ["conv", "depthwise_conv", "conv"]
    assert records[-1]["op"] == "fc" and all(record["kernel"] == "int8" for record in records)
    assert all(record["samples"] == SAMPLES and record["runtime"] == runtime for record in records)
    # a healthy int8 model: every layer well above noise, errors growing with depth
    assert all(8 < record["sqnr_db"] < 60 for record in records), records
    assert records[0]["sqnr_db"] > records[-2]["sqnr_db"]
    assert all(np.isclose(10 ** (-record["sqnr_db"] / 20), record["rel_rmse"], rtol=1e-2) for record in records)


def test_the_two_runtimes_measure_the_same_graph_alike(pt2e_files, images, trained_tiny):
    model = trained_tiny.model()
    litert, onnx_records = (per_layer_errors(pt2e_files[name], runtime, model, images) for name, runtime in FILES)
    assert all(abs(a["sqnr_db"] - b["sqnr_db"]) < 1.5 for a, b in zip(litert, onnx_records)), (litert, onnx_records)


def test_probed_onnx_graph_computes_what_the_file_computes(pt2e_files, images):
    """Reading the intermediate tensors barely changes what onnxruntime computes: the probed logits are the
    file's own but for a rare one-step rounding difference (graph outputs keep a few QDQ pairs unfused)."""
    session = get_runtime("onnxruntime").load(pt2e_files["int8.onnx"], threads=1)
    tensors = onnx_layer_outputs(pt2e_files["int8.onnx"], images, threads=1)
    logits = session.run(images)
    step = session.output_quantization()[0]
    difference = np.abs(tensors[-1].values - logits)
    assert difference.max() <= step * 1.01 and (difference == 0).mean() > 0.95


def _spoil_tflite(source: Path, path: Path, position: int, factor: float) -> Path:
    """The int8 .tflite with the weight scales of its ``position``-th conv/FC op multiplied by ``factor``."""
    from edgekit.export.tflite_io import model_bytes, read_model, schema

    model = read_model(source)
    subgraph = model.subgraphs[0]
    names = {code: name for name, code in vars(schema().BuiltinOperator).items() if not name.startswith("_")}
    layer_ops = [op for op in subgraph.operators
                 if names[max(model.operatorCodes[op.opcodeIndex].builtinCode,
                              model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode)]
                 in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    weights = subgraph.tensors[layer_ops[position].inputs[1]]
    weights.quantization.scale = [scale * factor for scale in weights.quantization.scale]
    path.write_bytes(model_bytes(model))
    return path


def _spoil_onnx(source: Path, path: Path, position: int, factor: float) -> Path:
    """The QDQ .onnx with the weight scales of its ``position``-th Conv/Gemm multiplied by ``factor``."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    producers = {output: node for node in graph.node for output in node.output}
    layer = [node for node in graph.node if node.op_type in ("Conv", "Gemm", "MatMul")][position]
    dequantize = producers[layer.input[1]]
    initializers = {init.name: init for init in graph.initializer}
    scale = numpy_helper.to_array(initializers[dequantize.input[1]]) * np.float32(factor)
    graph.initializer.append(numpy_helper.from_array(scale.astype(np.float32), dequantize.input[1] + "_spoiled"))
    dequantize.input[1] = dequantize.input[1] + "_spoiled"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("position, factor", [(14, 3.0), (22, 0.25), (3, 0.25)])
def test_a_spoiled_conv_is_ranked_worst_in_both_runtimes(pt2e_files, images, trained_tiny, tmp_path, position, factor):
    model = trained_tiny.model()
    spoiled_name = layer_names(model)[position]
    spoiled = {"int8.tflite": _spoil_tflite(pt2e_files["int8.tflite"], tmp_path / "s.tflite", position, factor),
               "int8.onnx": _spoil_onnx(pt2e_files["int8.onnx"], tmp_path / "s.onnx", position, factor)}
    for name, runtime in FILES:
        healthy = per_layer_errors(pt2e_files[name], runtime, model, images)
        records = per_layer_errors(spoiled[name], runtime, model, images)
        assert worst_layers(records)[0]["layer"] == spoiled_name, (runtime, worst_layers(records))
        assert worst_layers(healthy)[0]["layer"] != spoiled_name or position == 27
        assert records[position]["sqnr_db"] < healthy[position]["sqnr_db"] - 10


def test_mismatched_graphs_are_an_error_not_a_guess(trained_tiny, images):
    from edgekit.runtimes.per_layer import RuntimeTensor

    model = trained_tiny.model()
    layers = model_layers(model, torch.from_numpy(images[:1]))
    tensors = [RuntimeTensor("Conv", np.zeros((1, *layer.shape), np.float32), "int8") for layer in layers]
    assert len(match_layers(layers, tensors, "x")) == 28
    with pytest.raises(PerLayerError, match="27 conv/FC ops in the runtime graph, 28 in the model"):
        match_layers(layers, tensors[:-1], "x")
    swapped = tensors[:1] + tensors[2:3] + tensors[1:2] + tensors[3:]
    with pytest.raises(PerLayerError, match="op #1"):
        match_layers(layers, swapped, "x")


def test_layer_outputs_fold_bn_and_activation(trained_tiny):
    layers = model_layers(trained_tiny.model(), torch.zeros(1, 3, RESOLUTION, RESOLUTION))
    assert layers[0].modules == ("features.stem.conv", "features.stem.bn", "features.stem.act")
    assert layers[-1].name == layers[-1].output_module == "classifier" and layers[-1].shape == (10,)


def test_error_metrics():
    reference = np.ones((4, 8), np.float32)
    sqnr, rel_rmse = error_metrics(reference * 1.1, reference)
    assert sqnr == pytest.approx(20.0, abs=1e-3) and rel_rmse == pytest.approx(0.1, abs=1e-6)
    assert error_metrics(reference, reference) == (MAX_SQNR_DB, 0.0)


def test_keep_float_names_and_globs_resolve_against_the_model():
    from edgekit.models import create_model
    from edgekit.quantize.keep_float import resolve_keep_float

    model = create_model("mobilenet_v1", alpha=0.25, num_classes=10)
    assert resolve_keep_float(model, ["classifier", "features.block1*.dw.conv"]) == (
        "features.block1.dw.conv", "features.block10.dw.conv", "features.block11.dw.conv",
        "features.block12.dw.conv", "features.block13.dw.conv", "classifier")
    with pytest.raises(UserInputError) as raised:
        resolve_keep_float(model, ["features.block7.pw.cnv"])
    message = str(raised.value)
    assert "\n" not in message and "'features.block7.pw.cnv' matches no conv or FC layer" in message
    assert "features.block7.pw.conv" in message.split("closest:")[1]


def test_keep_float_classifier_runs_as_a_float_kernel_in_both_formats(trained_tiny, images, tmp_path):
    torch.set_num_threads(1)
    calibration = trained_tiny.transform(trained_tiny.train_set.load(torch.arange(64)))
    files = _export_pt2e(trained_tiny.model(), calibration, tmp_path, keep_float=("classifier",))
    for name, runtime in FILES:
        kernels = check_int8(files[name], runtime)
        assert (kernels["int8"], kernels["float"]) == (27, 1), kernels
        records = per_layer_errors(files[name], runtime, trained_tiny.model(), images)
        assert [record["layer"] for record in records if record["kernel"] == "float"] == ["classifier"]


def test_litert_reads_every_image_when_the_batch_cannot_be_resized(pt2e_files, images, monkeypatch):
    """The default recipe's .tflite refuses a batch resize, so LiteRT runs it image by image; the preserved
    tensors then hold only the last image unless each image is read after its own run."""
    from edgekit.runtimes.litert_rt import LiteRTSession
    from edgekit.runtimes.per_layer import litert_layer_outputs

    one_by_one = [litert_layer_outputs(pt2e_files["int8.tflite"], images[i : i + 1], 1) for i in range(3)]
    monkeypatch.setattr(LiteRTSession, "_resize", lambda self, batch: False)
    together = litert_layer_outputs(pt2e_files["int8.tflite"], images[:3], 1)
    for position, tensor in enumerate(together):
        assert tensor.values.shape[0] == 3
        np.testing.assert_array_equal(tensor.values, np.concatenate([run[position].values for run in one_by_one]))
