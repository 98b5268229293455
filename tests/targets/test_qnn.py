"""qnn-htp: Qualcomm's HTP simulator through onnxruntime-qnn, strict mode, coverage, agreement, context binary.

Needs `bash scripts/setup-qnn.sh` (onnxruntime-qnn==2.7.0); without it the simulator tests skip, saying so.
"""

import json
import sys
from pathlib import Path

import onnx
import pytest
from onnx import helper

from edgekit.profile.devices import DeviceProfile
from edgekit.targets import make_target
from edgekit.targets.qnn import QnnHtpTarget, QnnUnsupportedOps
from targets.conftest_models import RESOLUTION, serve_or_skip
from targets.test_local import TargetContract

SCRIPT = Path(__file__).resolve().parents[2] / "edgekit" / "profile" / "ondevice.py"


def profile(**settings) -> DeviceProfile:
    return DeviceProfile(name="htp-test", kind="qnn-htp", arch="x86_64", runtimes=["onnxruntime"],
                         delegates={"onnxruntime": ["qnn-htp"]}, qnn_htp={"htp_arch": 75, "soc_model": 57, **settings})


@pytest.fixture(scope="module")
def htp():
    yield from serve_or_skip(make_target(profile(), check_available=False), "qnn-htp")



@pytest.fixture(scope="module")
def with_erf(models) -> Path:
    """The good int8 model with an Erf (the op inside exact GELU) after its logits: HTP has no Erf."""
    model = onnx.load(models.int8_onnx)
    logits = model.graph.output[0].name
    model.graph.node.append(helper.make_node("Erf", [logits], ["erf_logits"], name="gelu_erf"))
    model.graph.output[0].name = "erf_logits"
    path = models.folder / "int8_with_erf.onnx"
    onnx.save(model, path)
    return path


def test_good_int8_qdq_model_runs_fully_on_the_htp(htp, models, tmp_path):
    context = tmp_path / "int8_ctx.onnx"
    report = htp.check(models.int8_onnx, inputs=models.inputs_npz, context_out=context)
    coverage = report["coverage"]
    assert coverage["fraction"] == 1.0 and coverage["on_htp"] == coverage["nodes"] > 50 and not coverage["unsupported"]
    assert {"Conv", "Gemm", "QuantizeLinear", "DequantizeLinear"} <= set(coverage["op_types"])
    assert report["strict"] == {"ok": True, "error": None} and report["simulated"] is True
    agreement = report["agreement"]
    assert agreement["samples"] == 40 and agreement["top1_agreement"] >= 0.9
    assert agreement["max_abs_diff"] < 2.0 and agreement["simulator_wall_ms_median"] > 0
    assert report["context"]["reloads"] and report["context"]["htp_arch"] == 75
    assert context.is_file() and report["context"]["bytes"] == context.stat().st_size > 10_000
    assert {node.op_type for node in onnx.load(context).graph.node} == {"EPContext"}


def test_strict_mode_names_the_op_the_htp_rejects(htp, with_erf):
    with pytest.raises(QnnUnsupportedOps, match=r"rejects 1 of \d+ nodes in strict mode: Erf \(gelu_erf\)") as caught:
        htp.check(with_erf)
    assert caught.value.nodes == [{"name": "gelu_erf", "op_type": "Erf"}]


def test_profiling_script_through_the_simulator(htp, models):
    script = htp.put(SCRIPT, "ondevice.py")
    remote = htp.put(models.int8_onnx, "int8.onnx")
    result = htp.run(["python3", script, remote, "--provider", "qnn-htp", "--warmup", "1", "--min-runs", "2",
                      "--min-seconds", "0"], timeout=600)
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout.strip().splitlines()[-1])
    assert output["delegate"] == "QNNExecutionProvider" and output["runs"] == 2
    assert output["latency_ms"] is None and output["init_ms"] is None  # simulator time is no device latency
    assert output["simulated_ms"]["p50"] > 0


def test_profiling_script_run_of_a_rejected_model_is_a_target_error(htp, with_erf):
    script = htp.put(SCRIPT, "ondevice.py")
    remote = htp.put(with_erf, "with_erf.onnx")
    with pytest.raises(QnnUnsupportedOps, match=r"with_erf\.onnx: the HTP rejects .*Erf \(gelu_erf\)"):
        htp.run(["python3", script, remote, "--provider", "qnn-htp", "--min-runs", "1", "--min-seconds", "0"],
                timeout=600)


def test_static_batch_pins_a_dynamic_batch_and_copies_a_static_file(models, tmp_path):
    import numpy as np
    import onnxruntime as ort
    import torch

    from edgekit.export.onnx import write_onnx
    from edgekit.targets.qnn import static_batch

    dynamic = write_onnx(models.torch_model, torch.zeros(1, 3, RESOLUTION, RESOLUTION), tmp_path / "dynamic.onnx",
                         opset=17)
    pinned = tmp_path / "pinned.onnx"
    assert static_batch(dynamic, pinned) is True
    graph = onnx.load(pinned).graph
    assert [dim.dim_value for dim in graph.input[0].type.tensor_type.shape.dim] == [1, 3, RESOLUTION, RESOLUTION]
    assert [dim.dim_value for dim in graph.output[0].type.tensor_type.shape.dim] == [1, 10]
    image = np.load(models.inputs_npz)["images"][:1].astype(np.float32)
    outputs = [ort.InferenceSession(str(path)).run(None, {"input": image})[0] for path in (dynamic, pinned)]
    np.testing.assert_array_equal(*outputs)
    copy = tmp_path / "copy.onnx"
    assert static_batch(pinned, copy) is False and copy.read_bytes() == pinned.read_bytes()


def test_missing_plugin_is_unavailable_with_the_setup_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime_qnn", None)  # import fails as if not installed
    with QnnHtpTarget(profile()) as target:
        ok, why = target.available()
    assert not ok and "onnxruntime_qnn is not installed" in why and "setup-qnn.sh" in why


def test_missing_backend_file_is_unavailable(tmp_path):
    with QnnHtpTarget(profile(backend_path=str(tmp_path / "libQnnHtp.so"))) as target:
        ok, why = target.available()
    assert not ok and "libQnnHtp.so not found" in why
    assert target.simulated and target.describe()["htp_arch"] == 75


class TestQnnTargetContract(TargetContract):
    @pytest.fixture
    def target(self):
        target = QnnHtpTarget(profile())
        yield target
        target.cleanup()

    def workdir_exists(self, target):
        return target.workdir.exists()
