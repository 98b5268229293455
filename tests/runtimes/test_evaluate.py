"""evaluate_file against a plain numpy computation, and the reference comparison fields."""

import numpy as np
import pytest

from edgekit.runtimes import evaluate_file, get_runtime

FILES = [("float.onnx", "onnxruntime"), ("int8.onnx", "onnxruntime"), ("float.tflite", "litert"),
         ("int8.tflite", "litert")]


def numpy_topk(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float, int]:
    """(top-1 %, top-5 %, images whose rank is ambiguous because int8 logits tie at the boundary)."""
    label_logit = logits[np.arange(len(labels)), labels][:, None]
    above, tied = (logits > label_logit).sum(1), (logits == label_logit).sum(1) - 1
    top1 = (logits.argmax(1) == labels).mean() * 100
    top5 = (above < 5).mean() * 100
    ambiguous = int(((above < 5) & (above + tied >= 5)).sum() + ((above == 0) & (tied > 0)).sum())
    return top1, top5, ambiguous


@pytest.mark.parametrize("file, runtime", FILES)
def test_accuracy_equals_a_numpy_computation(built, file, runtime):
    result = evaluate_file(built.files[file], runtime, built.test_set, built.transform, threads=1, batch_size=64)
    logits = get_runtime(runtime).load(built.files[file], threads=1).run(built.images)
    top1, top5, ambiguous = numpy_topk(logits, built.labels)
    tolerance = 100 * ambiguous / len(built.labels) + 1e-9
    assert result["top1"] == pytest.approx(top1, abs=tolerance)
    assert result["top5"] == pytest.approx(top5, abs=tolerance)
    assert (result["artifact"], result["runtime"], result["threads"], result["samples"]) == (
        str(built.files[file]), runtime, 1, len(built.test_set))
    assert result["top1"] > 40  # a trained model: well above the 10% of guessing


def test_runtime_by_suffix_and_description(built):
    result = evaluate_file(built.files["int8.tflite"], None, built.test_set, built.transform, threads=1,
                           batch_size=300)
    assert result["runtime"] == "litert" and result["delegate"] == "XNNPACK" and result["version"]
    assert "reference" not in result


def test_reference_on_a_float_file_is_in_absolute_units(built, torch_logits):
    result = evaluate_file(built.files["float.onnx"], "onnxruntime", built.test_set, built.transform,
                           threads=1, batch_size=64, reference=built.model, reference_samples=100)
    reference = result["reference"]
    assert (reference["samples"], reference["unit"], reference["output_scale"]) == (100, "abs", None)
    assert reference["top1_agreement"] == 1.0 and reference["max_diff"] < 1e-3


def test_reference_on_an_int8_file_counts_output_steps(built, torch_logits):
    path = built.files["int8.tflite"]
    result = evaluate_file(path, "litert", built.test_set, built.transform, threads=1, batch_size=64,
                           reference=built.model, reference_samples=150)
    session = get_runtime("litert").load(path, threads=1)
    logits, expected = session.run(built.images[:150]), torch_logits[:150]
    scale = session.output_quantization()[0]
    reference = result["reference"]
    assert (reference["samples"], reference["unit"], reference["output_scale"]) == (150, "LSB", scale)
    assert reference["top1_agreement"] == pytest.approx((logits.argmax(1) == expected.argmax(1)).mean())
    assert reference["max_diff"] == pytest.approx(np.abs(logits - expected).max() / scale, rel=1e-5)


def test_a_callable_reference_compares_two_runtimes(built):
    onnx_session = get_runtime("onnxruntime").load(built.files["int8.onnx"], threads=1)
    result = evaluate_file(built.files["int8.tflite"], "litert", built.test_set, built.transform, threads=1,
                           batch_size=64, reference=onnx_session.run)
    assert result["reference"]["samples"] == len(built.test_set)
    assert result["reference"]["top1_agreement"] > 0.8  # measured 0.93: two PTQ flows, two sets of ranges


def test_int8_tflite_computes_what_the_quantized_torch_graph_computes(built):
    """Against the PT2E graph it was converted from, LiteRT's int8 kernels differ by rounding only.

    Measured: max 6 LSB (median ~1), 96% top-1 agreement on 300 images; the tiny model's top-2 logits are
    often only a few LSB apart, so rounding flips some argmaxes.
    """
    result = evaluate_file(built.files["int8.tflite"], "litert", built.test_set, built.transform, threads=1,
                           batch_size=64, reference=built.quantized_graph, reference_samples=len(built.test_set))
    reference = result["reference"]
    assert reference["unit"] == "LSB" and reference["max_diff"] <= 10
    assert reference["top1_agreement"] >= 0.9
