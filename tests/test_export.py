"""The exporters keep the build's output readable: converter chatter, even from C++, does not reach the terminal."""

import pytest
import torch

from edgekit.export import write_onnx, write_tflite
from edgekit.models import create_model


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_conversion_prints_nothing_on_stdout_or_stderr(fmt, tmp_path, capfd):
    model = create_model("mobilenet_v1", alpha=0.25, num_classes=10).eval()
    example = torch.zeros(2, 3, 32, 32)
    capfd.readouterr()
    if fmt == "tflite":
        path = write_tflite(model, example, tmp_path / "model.tflite")
    else:
        path = write_onnx(model, example, tmp_path / "model.onnx", opset=17)
    out, err = capfd.readouterr()
    assert path.stat().st_size > 100_000
    assert (out, err) == ("", "")
    print("after")  # file descriptors 1 and 2 are back where they were
    assert capfd.readouterr().out == "after\n"


def test_verbose_export_shows_the_converters_output(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("EDGEKIT_VERBOSE_EXPORT", "1")
    model = create_model("mobilenet_v1", alpha=0.25, num_classes=10).eval()
    capfd.readouterr()
    write_tflite(model, torch.zeros(2, 3, 32, 32), tmp_path / "model.tflite")
    out, err = capfd.readouterr()
    assert "Write Model" in out + err


class DataDependent(torch.nn.Module):
    """Control flow on a tensor's value: torch.export cannot trace it, so no converter can."""

    def forward(self, x):
        return x * 2 if x.sum() > 0 else x


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_a_model_the_converter_rejects_is_one_line_naming_the_file(fmt, tmp_path, capfd):
    from edgekit.export import ExportError

    with pytest.raises(ExportError) as caught:
        if fmt == "tflite":
            write_tflite(DataDependent(), torch.ones(2, 3, 8, 8), tmp_path / "bad.tflite")
        else:
            write_onnx(DataDependent(), torch.ones(2, 3, 8, 8), tmp_path / "bad.onnx", opset=17)
    message = str(caught.value)
    assert message.startswith(f"bad.{fmt}: ") and "\n" not in message and "EDGEKIT_VERBOSE_EXPORT=1" in message
    assert not (tmp_path / f"bad.{fmt}").exists()
    assert capfd.readouterr() == ("", "")
