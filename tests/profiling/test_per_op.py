"""Time per layer on the host (edgekit/profile/per_op.py): onnxruntime's profile parsed, its nodes named by the
model's layers, float and int8 side by side; and the report's time tables and costliest-kernel lines."""

import numpy as np
import pytest

from edgekit.models.layers import Layer
from edgekit.profile.per_op import PerOpError, layer_times, node_times, side_by_side
from edgekit.report.schema import report_schema, validate_against


def check_schema(definition: str, value) -> None:
    """``value`` is valid as the report schema's ``$defs/<definition>``."""
    validate_against({"$ref": f"#/$defs/{definition}", "$defs": report_schema()["$defs"]}, value, definition)


def _event(name, op, ts, dur, shape=(1, 4, 2, 2)):
    return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur,
            "args": {"op_name": op, "output_type_shape": [{"float": list(shape)}]}}


def _run(ts, dur):
    return {"cat": "Session", "name": "model_run", "ts": ts, "dur": dur}


EVENTS = [_run(0, 100), _event("conv_a", "Conv", 10, 50), _event("pool", "ReduceMean", 70, 5, (1, 4, 1, 1)),
          _run(200, 100), _event("conv_a", "Conv", 210, 20), _event("pool", "ReduceMean", 240, 3, (1, 4, 1, 1)),
          _run(400, 100), _event("conv_a", "Conv", 410, 40), _event("pool", "ReduceMean", 460, 7, (1, 4, 1, 1))]
LAYER = Layer("features.stem.conv", "conv", "features.stem.act", (4, 2, 2))


def test_node_times_skip_the_warm_up_runs_and_take_medians():
    nodes = node_times(EVENTS, skip_runs=1)
    assert [(node.name, node.op_type, node.output_size) for node in nodes] == [("conv_a", "Conv", 16),
                                                                               ("pool", "ReduceMean", 4)]
    assert [node.ms for node in nodes] == [0.03, 0.005]  # medians of 20/40 us and 3/7 us


def test_layers_are_named_in_order_and_other_ops_by_type():
    layers, others = layer_times(node_times(EVENTS, skip_runs=1), [LAYER], "m.onnx")
    assert layers == [{"layer": "features.stem.conv", "op": "conv", "node": "conv_a", "node_op": "Conv", "ms": 0.03}]
    assert others == [{"op_type": "ReduceMean", "ms": 0.005, "nodes": 1}]
    both = side_by_side((layers, others), ([{**layers[0], "ms": 0.01, "node_op": "QLinearConv"}], []))
    assert both["layers"][0] == {"layer": "features.stem.conv", "op": "conv", "float": 0.03, "int8": 0.01,
                                 "float_node_op": "Conv", "int8_node_op": "QLinearConv"}
    assert both["float_total"] == 0.035 and both["int8_total"] == 0.01
    assert both["other_ops"] == [{"op_type": "ReduceMean", "float": 0.005, "int8": None}]
    alone = side_by_side(([], []), (layers, others))  # a float model that did not run: an empty column
    assert alone["layers"][0]["float"] is None and alone["float_total"] is None


def test_a_graph_that_does_not_line_up_is_an_error_not_a_guess():
    nodes = node_times(EVENTS, skip_runs=1)
    with pytest.raises(PerOpError, match="1 conv/FC nodes ran .* the model has 2"):
        layer_times(nodes, [LAYER, LAYER], "m.onnx")
    wrong_shape = Layer("features.stem.conv", "conv", "features.stem.act", (8, 2, 2))
    with pytest.raises(PerOpError, match="writes 16 values, layer features.stem.conv 32"):
        layer_times(nodes, [wrong_shape], "m.onnx")
    # onnxruntime's NCHWc convs pad the channels to their block (here 3 -> 16): still the same layer
    padded = node_times([_run(0, 100), _event("relu_nchwc", "Conv", 10, 50, (1, 16, 2, 2))], skip_runs=0)
    (row,), _ = layer_times(padded, [Layer("features.stem.conv", "conv", "features.stem.act", (3, 2, 2))], "m.onnx")
    assert row["node"] == "relu_nchwc"
    with pytest.raises(PerOpError, match="writes 64 values"):
        layer_times(padded, [Layer("features.stem.conv", "conv", "features.stem.act", (32, 2, 2))], "m.onnx")


@pytest.mark.slow
def test_every_conv_of_the_real_files_gets_its_layer_name(models):
    import torch

    from edgekit.models.layers import model_layers
    from edgekit.profile.per_op import profile_layer_times

    image = np.asarray(models.calibration[:1], dtype=np.float32)
    entries = profile_layer_times(models.float_onnx, [models.int8_onnx], models.torch_model, image, warmup=2, runs=5)
    expected = [layer.name for layer in model_layers(models.torch_model, torch.from_numpy(image))]
    (entry,) = entries
    assert [row["layer"] for row in entry["layers"]] == expected
    convs = [row for row in entry["layers"] if row["op"] != "fc"]
    assert len(convs) == len(expected) - 1 and all(row["int8_node_op"] == "QLinearConv" for row in convs)
    assert all(row["float_node_op"] in ("Conv", "FusedConv") for row in convs)
    assert all(row["float"] > 0 and row["int8"] > 0 for row in entry["layers"])
    assert entry["obtained"] == "real" and entry["device"] == "host" and entry["runtime"] == "onnxruntime"
    assert entry["unit"] == "ms" and entry["int8_total"] >= sum(row["int8"] for row in entry["layers"])
    check_schema("per_op", entry)


def _kernels(*rows):
    kernels = [{"symbol": name, "library": "libx.so", "instructions": count, "macs": {"dot": count // 4}}
               for name, count in rows]
    return {"total": sum(count for _, count in rows), "kernels": kernels, "runs": 3}


def test_report_shows_times_and_kernels_and_the_summary_names_the_costliest():
    from edgekit.report.per_layer_html import costliest_kernel_lines, per_layer_section

    common = {"device": "a76-emulated", "runtime": "litert", "delegate": "xnnpack", "threads": 1,
              "metric": "instructions", "unit": "instructions", "obtained": "emulated"}
    report = {
        "profiles": [
            {**common, "artifact": "float/model.tflite", "value": 300, "float_artifact": None,
             "kernels": _kernels(("xnn_f32_gemm", 250), ("xnn_f32_dwconv", 50))},
            {**common, "artifact": "int8/qat.tflite", "value": 100, "float_artifact": "float/model.tflite",
             "kernels": _kernels(("xnn_qs8_gemm", 60), ("xnn_qs8_dwconv", 30), ("xnn_qs8_igemm", 8), ("memcpy", 2))},
        ],
        "per_op": [{"artifact": "int8/qat.onnx", "float_artifact": "float/model.onnx", "runtime": "onnxruntime",
                    "device": "host", "obtained": "real", "metric": "latency", "unit": "ms", "threads": 1,
                    "runs": 30, "layers": [{"layer": "features.stem.conv", "op": "conv", "float": 0.076, "int8": 0.163,
                                            "int8_node_op": "QLinearConv"}],
                    "other_ops": [{"op_type": "Transpose", "float": None, "int8": 0.025}],
                    "float_total": 0.076, "int8_total": 0.188}],
    }
    page = per_layer_section(report)
    assert "Time per layer: int8/qat.onnx vs float/model.onnx" in page and "(real; profiler on)" in page
    assert "<td>2.14</td>" in page or "2.14" in page  # int8/float of the stem
    assert "Instructions per kernel: int8/qat.tflite vs float/model.tflite" in page and "not a time" in page
    assert page.index("xnn_qs8_gemm") < page.index("xnn_f32_gemm")  # int8 table first, float beside it
    (line,) = costliest_kernel_lines(report, width=400)
    assert "xnn_qs8_gemm (0.00 M, 60%), xnn_qs8_dwconv" in line and "xnn_qs8_igemm" in line and "memcpy" not in line
    assert "emulated instructions" in line
    host_only = {"profiles": [], "per_op": report["per_op"]}
    (line,) = costliest_kernel_lines(host_only, width=400)
    assert line.startswith("costliest layers int8/qat.onnx (host onnxruntime, real")


QNN_CSV = """Msg Timestamp,Message,Time,Unit of Measurement,Timing Source,Event Level,Event Identifier
0,FINALIZE,410752,US,BACKEND,ROOT,QNN (finalize) time
0,BACKEND,270072746,CYCLES,BACKEND,ROOT,Accelerator (execute) time (cycles)
0,NODE,8628,CYCLES,BACKEND,SUB-EVENT,Input OpId_2 (cycles)
0,NODE,9059786,CYCLES,BACKEND,SUB-EVENT,Transpose_token_160:OpId_17 (cycles)
0,NODE,10491972,CYCLES,BACKEND,SUB-EVENT,node_Conv_390_token_1:OpId_25 (cycles)
"""


def test_the_simulators_profile_gives_cycles_per_onnx_node(tmp_path):
    from edgekit.profile.per_op import read_qnn_profile

    path = tmp_path / "qnn.csv"
    path.write_text(QNN_CSV)
    nodes = read_qnn_profile(path, {"node_Conv_390": "Conv"})
    assert nodes == [("Input", "QNN:Input", 8628), ("Transpose", "QNN:Transpose", 9059786),
                     ("node_Conv_390", "Conv", 10491972)]


@pytest.mark.slow
def test_htp_simulator_cycles_per_layer_are_labelled_simulated(models):
    pytest.importorskip("onnxruntime_qnn", reason="onnxruntime-qnn is not installed (bash scripts/setup-qnn.sh)")
    import torch

    from edgekit.models.layers import model_layers
    from edgekit.profile.per_op import qnn_layer_cycles

    image = np.asarray(models.calibration[:1], dtype=np.float32)
    (entry,) = qnn_layer_cycles(models.float_onnx, [models.int8_onnx], models.torch_model, image, device="htp")
    expected = [layer.name for layer in model_layers(models.torch_model, torch.from_numpy(image))]
    assert [row["layer"] for row in entry["layers"]] == expected
    assert all(row["int8"] > 0 for row in entry["layers"] if row["op"] != "fc")
    assert (entry["obtained"], entry["metric"], entry["unit"]) == ("simulated", "cycles", "cycles")
    assert entry["int8_total"] >= sum(row["int8"] for row in entry["layers"])
    check_schema("per_op", entry)


def test_an_int8_file_slower_than_float_is_explained_by_its_layer_times():
    from edgekit.report.summary import slowdown_reason

    report = {"artifacts": [], "int8_kernels": [], "profiles": [], "per_op": [
        {"artifact": "int8/qat.onnx", "float_artifact": "float/model.onnx", "runtime": "onnxruntime", "device": "host",
         "obtained": "real", "metric": "latency", "unit": "ms", "runs": 30,
         "layers": [{"layer": "features.stem.conv", "float": 0.10, "int8": 0.21},
                    {"layer": "features.block1.pw.conv", "float": 0.09, "int8": 0.04}],
         "other_ops": [{"op_type": "Transpose", "float": None, "int8": 0.03}]}]}
    slow = {"artifact": "int8/qat.onnx", "runtime": "onnxruntime", "device": "host", "delegate": "cpu", "threads": 1,
            "metric": "latency", "float_artifact": "float/model.onnx", "per_node": None}
    reason = slowdown_reason(report, slow)
    assert reason == ("time per layer on this host (onnxruntime's profiler), int8 minus float: "
                      "features.stem.conv +0.110 ms, (Transpose) +0.030 ms")
