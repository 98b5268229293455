"""The Per layer section and the summary's worst layers rank by the SQNR a layer loses itself."""

from edgekit.report.per_layer_html import per_layer_section, worst_layer_lines

ENTRY = {"artifact": "int8/ptq.tflite", "runtime": "litert", "method": "ptq", "samples": 64, "layers": [
    {"layer": "features.stem.conv", "op": "conv", "kernel": "int8", "sqnr_db": 38.0, "sqnr_drop_db": 2.0},
    {"layer": "features.block1.dw.conv", "op": "depthwise_conv", "kernel": "int8", "sqnr_db": 3.0, "sqnr_drop_db": 35.0},
    {"layer": "features.block1.pw.conv", "op": "conv", "kernel": "int8", "sqnr_db": 2.0, "sqnr_drop_db": 1.0},
    {"layer": "classifier", "op": "fc", "kernel": "float", "sqnr_db": 1.5, "sqnr_drop_db": 0.5},
]}


def test_section_draws_worst_first_and_names_float_kernels():
    html = per_layer_section({"per_layer": [ENTRY]})
    assert "<h2>Per layer</h2>" in html and "<svg" in html
    order = [html.index(name) for name in ("features.block1.dw.conv", "features.stem.conv", "features.block1.pw.conv")]
    assert order == sorted(order)
    assert "Float kernels: classifier" in html


def test_section_says_when_nothing_was_measured():
    assert "not measured" in per_layer_section({})


def test_summary_names_the_three_worst_layers():
    lines = worst_layer_lines({"per_layer": [ENTRY]})
    assert all(len(part) <= 120 for part in lines) and all(part.startswith("  ") for part in lines[1:])
    line = " ".join(part.strip() for part in lines)
    assert line.startswith("worst layers int8/ptq.tflite (litert): features.block1.dw.conv (−35.0 dB")
    assert "classifier" not in line and line.count("dB,") == 3
