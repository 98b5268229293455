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
