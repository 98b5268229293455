"""The format table is the one place a format is described: runtimes, profiling, the report and the
stages all read it, and an unknown format is an error when the recipe loads."""

import dataclasses

import pytest

from edgekit import formats

from edgekit.errors import RecipeError, UserInputError
from edgekit.recipe import validate
from edgekit.report.summary import artifact_format
from edgekit.runtimes import runtime_for


@pytest.fixture
def extra_format(monkeypatch):
    """A made-up row: ONNX written under another suffix, loaded by onnxruntime."""
    row = dataclasses.replace(formats.FORMATS["onnx"], name="onnx2", suffix=".onnx2")
    monkeypatch.setitem(formats.FORMATS, "onnx2", row)
    return row


def test_every_reader_follows_a_new_row(extra_format):
    assert runtime_for("model.onnx2").name == "onnxruntime"
    assert formats.format_for_path("int8/qat.ONNX2") is extra_format
    assert artifact_format({}, "float/model.onnx2") == "onnx2"
    assert "onnx2" in formats.formats_loaded_by("onnxruntime")


@pytest.mark.slow
def test_the_row_writes_with_its_writer_and_recipe_options(extra_format, tmp_path, tiny_recipe):
    import torch

    from edgekit.models import create_model

    model = create_model("mobilenet_v1", alpha=0.25, num_classes=10).eval()
    path = extra_format.write(model, torch.zeros(2, 3, 32, 32), tmp_path / "m.onnx2", tiny_recipe().export, "float32")
    session = runtime_for(path).load(path, threads=1)
    assert session.run(torch.zeros(3, 3, 32, 32).numpy()).shape == (3, 10)


def test_an_unknown_format_is_a_load_time_error():
    with pytest.raises(RecipeError, match=r"export\.formats"):
        validate({"export": {"formats": ["tflite", "coreml"]}}, source="r.yaml")
    with pytest.raises(UserInputError, match="unknown export format 'onx'.*did you mean 'onnx'"):
        formats.get_format("onx")
    with pytest.raises(UserInputError, match=r"m\.pt: no runtime runs '\.pt' files"):
        formats.format_for_path("m.pt")


def test_io_types_come_from_the_row(tiny_recipe):
    export = tiny_recipe(export={"tflite_io": "float32"}).export
    assert formats.FORMATS["tflite"].io_type(export, "int8") == "float32"
    assert formats.FORMATS["tflite"].io_type(tiny_recipe().export, "int8") == "int8"
    assert formats.FORMATS["onnx"].io_type(export, "int8") == "float32"
    assert formats.FORMATS["tflite"].io_type(export, "float32") == "float32"


def test_the_report_schema_accepts_every_format_of_the_table():
    """report.json names each artifact's format; its schema lists them (a .pte build failed validation)."""
    from edgekit.report.schema import report_schema

    schema = report_schema()
    allowed = schema["$defs"]["artifact"]["properties"]["format"]["enum"]
    assert set(formats.FORMATS) <= set(allowed)
