"""``export.tflite_io``: int8 .tflite files with float32 input and output, through a whole build."""

import numpy as np
import pytest

from conftest import tiny_recipe_data
from edgekit.errors import RecipeError
from edgekit.export.tflite_io import TfliteRewriteError, read_model, schema, to_float_io
from edgekit.pipeline import build
from edgekit.recipe import validate
from edgekit.report import format_summary


def ptq_tflite_recipe(io: str):
    """A tiny PTQ build, LiteRT only, no devices, with int8 .tflite files of the given I/O type."""
    return validate(tiny_recipe_data(
        quantize={"method": "ptq", "calibration_batches": 2},
        export={"formats": ["tflite"], "tflite_io": io},
        evaluate={"runtimes": ["litert"], "threads": 1},
        profile={"devices": []},
    ), source="<test>")


@pytest.fixture(scope="module")
def float_io_build(tmp_path_factory):
    recipe = ptq_tflite_recipe("float32")
    out_dir = tmp_path_factory.mktemp("float-io-build")
    report, _ = build(recipe, out_dir, log=lambda _: None)
    return report, out_dir


def test_the_build_writes_and_records_float_io_int8_tflite(float_io_build):
    from ai_edge_litert.interpreter import Interpreter

    report, out_dir = float_io_build
    (entry,) = [a for a in report["artifacts"] if a["name"] == "ptq_tflite"]
    assert (entry["precision"], entry["io"]) == ("int8", "float32")
    interpreter = Interpreter(model_path=str(out_dir / entry["path"]))
    assert interpreter.get_input_details()[0]["dtype"] == np.float32
    assert interpreter.get_output_details()[0]["dtype"] == np.float32


def test_float_io_keeps_every_kernel_int8_and_the_accuracy_entry(float_io_build):
    report, _ = float_io_build
    (check,) = [c for c in report["int8_kernels"] if c["artifact"] == "int8/ptq.tflite"]
    assert check["ok"] and check["float"] == 0 and check["int8"] == 28
    (accuracy,) = [a for a in report["accuracy"] if a["artifact"] == "int8/ptq.tflite"]
    # The float output comes out of a DEQUANTIZE: the difference to torch is still counted in output steps.
    assert accuracy["agreement"]["unit"] == "LSB" and accuracy["agreement"]["top1_agreement"] >= 0.9


def test_unknown_io_type_names_the_key(tiny_recipe):
    with pytest.raises(RecipeError, match=r"export\.tflite_io: .*'int8'.*'float32'.*\(got 'float16'\)"):
        tiny_recipe(export={"tflite_io": "float16"})


def test_an_int8_io_tensor_without_a_scale_is_refused(float_io_build):
    report, out_dir = float_io_build
    (entry,) = [a for a in report["artifacts"] if a["name"] == "ptq_tflite"]
    model = read_model(out_dir / entry["path"])
    subgraph = model.subgraphs[0]
    quantized_input = subgraph.tensors[subgraph.operators[0].outputs[0]]  # the QUANTIZE's int8 output
    subgraph.inputs = [subgraph.operators[0].outputs[0]]
    quantized_input.quantization.scale = []
    with pytest.raises(TfliteRewriteError, match=r"model\.tflite: int8 tensor '.*' has no scale"):
        to_float_io(model, "model.tflite")


def test_a_float_model_is_left_as_it_is(float_io_build):
    report, out_dir = float_io_build
    (entry,) = [a for a in report["artifacts"] if a["name"] == "float_tflite"]
    model = read_model(out_dir / entry["path"])
    operators, tensors = len(model.subgraphs[0].operators), len(model.subgraphs[0].tensors)
    to_float_io(model, "model.tflite")
    assert (len(model.subgraphs[0].operators), len(model.subgraphs[0].tensors)) == (operators, tensors)
    assert model.subgraphs[0].tensors[model.subgraphs[0].inputs[0]].type == schema().TensorType.FLOAT32


def test_the_report_page_shows_each_files_io_type(float_io_build):
    from edgekit.report import render_html

    report, _ = float_io_build
    page = render_html(report)
    assert "<th>I/O</th>" in page
    for artifact in report["artifacts"]:
        row = (f"<tr><td>{artifact['name']}</td><td>{artifact['path']}</td><td>{artifact['format']}</td>"
               f"<td>{artifact['precision']}</td><td>{artifact['method']}</td><td>{artifact['io']}</td>")
        assert row in page


def test_changing_only_the_io_type_re_exports_without_re_quantizing(float_io_build, tmp_path):
    import shutil

    report, out_dir = float_io_build
    copy = shutil.copytree(out_dir, tmp_path / "build")
    rebuilt, records = build(ptq_tflite_recipe("int8"), copy, log=lambda _: None)
    status = {record.name: record.status for record in records}
    assert (status["train"], status["quantize"], status["export_int8"]) == ("cached", "cached", "ran")
    (entry,) = [a for a in rebuilt["artifacts"] if a["name"] == "ptq_tflite"]
    assert entry["io"] == "int8"
    (accuracy,) = [a for a in rebuilt["accuracy"] if a["artifact"] == "int8/ptq.tflite"]
    (before,) = [a for a in report["accuracy"] if a["artifact"] == "int8/ptq.tflite"]
    assert accuracy["top1"] == before["top1"]  # the same int8 model behind other I/O tensors
    (row,) = [line for line in format_summary(rebuilt, copy).splitlines() if line.startswith("int8/ptq.tflite ")]
    assert " int8 " in row and "float I/O" not in row


def test_a_state_that_does_not_restore_its_model_stops_the_build():
    import torch

    from edgekit.errors import EdgekitError
    from edgekit.stages import _check_restored

    images = torch.arange(12, dtype=torch.float32).reshape(2, 2, 3)
    expected = torch.nn.Flatten()(images).numpy()
    _check_restored(torch.nn.Flatten(), images, expected, "quantize/qat_state.pt")
    with pytest.raises(EdgekitError, match=r"quantize/qat_state\.pt: the restored quantized model differs"):
        _check_restored(torch.nn.Flatten(), images, expected + 0.01, "quantize/qat_state.pt")


def test_the_terminal_summary_says_which_int8_files_take_float(float_io_build):
    report, out_dir = float_io_build
    lines = format_summary(report, out_dir).splitlines()
    (int8_row,) = [line for line in lines if line.startswith("int8/ptq.tflite ")]
    (float_row,) = [line for line in lines if line.startswith("float/model.tflite ")]
    assert " int8 ptq, float I/O " in int8_row and " float32 " in float_row and "I/O" not in float_row
