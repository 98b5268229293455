"""profile_artifacts' logic on a scripted fake target: interleaving, ratios, emulated/simulated, failures."""

import json
from pathlib import Path

import pytest

from edgekit.errors import UserInputError
from edgekit.profile import run as profile_run
from edgekit.profile.devices import DeviceProfile
from edgekit.profile.run import plan_groups, profile_artifacts
from edgekit.targets.base import CommandResult, Target, TargetError

FAST = {"warmup_runs": 1, "min_runs": 5, "min_seconds": 0, "rounds": 3, "timeout_seconds": 30}


class ScriptedTarget(Target):
    """Answers each run of the on-device script with contract JSON: float files take 2 ms (or 8 M
    instructions), int8 files 1 ms (2 M), each later round 1% slower; ``crash`` makes a run fail."""

    kind = "fake"

    def __init__(self, *, emulated=False, simulated=False, crash: str | None = None, stdout_tail: str | None = None):
        self.emulated, self.simulated, self.crash, self.stdout_tail = emulated, simulated, crash, stdout_tail
        self.name, self.python, self.calls, self.cleaned = "fake", "python3", [], False

    def put(self, local: Path, remote_name: str) -> str:
        return f"/work/{remote_name}"

    def run(self, argv: list[str], *, timeout: float) -> CommandResult:
        self.calls.append(argv)
        if self.crash:
            return CommandResult(1, "", f"some warning\nondevice: {self.crash}\n", 0.1)
        if self.stdout_tail is not None:
            return CommandResult(0, self.stdout_tail, "", 0.1)
        model = argv[2]
        slower = 1 + 0.01 * sum(call[2] == model for call in self.calls[:-1])
        cost = 2.0 if "float" in model else 1.0
        latency = {key: cost * slower for key in ("p50", "p90", "p99", "mean", "min")} | {"std": 0.01}
        output = {"model": model, "runtime": "onnxruntime" if model.endswith(".onnx") else "litert",
                  "runtime_version": "9.9", "delegate": "CPUExecutionProvider", "threads": int(argv[argv.index("--threads") + 1]),
                  "latency_ms": None if (self.emulated or self.simulated) else latency, "runs": 5, "seconds": 0.01,
                  "init_ms": 3.0, "first_inference_ms": 4.0, "peak_rss_mb": 50.0 + len(self.calls),
                  "host": {"machine": "x86_64", "cpu": "Fake", "cores": 2, "governor": None},
                  "accuracy": None, "per_node": None,
                  "instructions_per_inference": int(cost * 4e6) if self.emulated else None}
        if self.simulated:
            output["simulated_ms"] = latency | {"p50": 250.0 * cost}
        return CommandResult(0, "a log line\n" + json.dumps(output) + "\n", "", 0.1)

    def get(self, remote_name: str, local: Path) -> Path:
        raise NotImplementedError

    def cleanup(self) -> None:
        self.cleaned = True


@pytest.fixture
def files(tmp_path):
    paths = {}
    for name in ("float.onnx", "int8.onnx", "qat_int8.onnx", "float.tflite", "int8.tflite"):
        paths[name] = tmp_path / name
        paths[name].write_bytes(b"not really a model")
    return paths


def profile_on(target: ScriptedTarget, monkeypatch, artifacts, *, kind="local", **options):
    monkeypatch.setattr(profile_run, "make_target", lambda profile: target)
    monkeypatch.setattr("edgekit.targets.base.usable_cores", lambda: 8)  # a scripted box, not this machine
    extra = {"qnn_htp": {}, "runtimes": ["onnxruntime"], "delegates": {"onnxruntime": ["qnn-htp"]}} if kind == "qnn-htp" else {}
    device = DeviceProfile(name="box", kind=kind, arch="auto" if kind == "local" else "x86_64",
                           protocol=options.pop("protocol", FAST), threads=options.pop("device_threads", [1]), **extra)
    logged = []
    entries = profile_artifacts(artifacts, device, log=logged.append, **options)
    return entries, logged


def models_run(target) -> list[str]:
    return [Path(argv[2]).name for argv in target.calls]


def test_int8_and_float_twin_alternate_round_by_round(files, monkeypatch):
    target = ScriptedTarget()
    entries, logged = profile_on(target, monkeypatch, [files["int8.onnx"]], float_twins={"int8.onnx": files["float.onnx"]})
    assert models_run(target) == ["0-float.onnx", "1-int8.onnx"] * 3
    by_name = {Path(entry["artifact"]).name: entry for entry in entries}
    assert [r["order"] for r in by_name["float.onnx"]["rounds"]] == [0, 2, 4]
    assert [r["order"] for r in by_name["int8.onnx"]["rounds"]] == [1, 3, 5]
    int8, float_ = by_name["int8.onnx"], by_name["float.onnx"]
    assert int8["value"] == int8["distribution"]["p50"] == pytest.approx(1.01)  # median of 1.00, 1.01, 1.02
    assert int8["spread_pct"] == pytest.approx(100 * 0.02 / 1.01, abs=0.01)
    assert int8["ratio_to_float"] == pytest.approx(int8["value"] / float_["value"], abs=1e-4)
    assert int8["float_artifact"] == str(files["float.onnx"]) and float_["float_artifact"] is None
    assert (int8["obtained"], int8["metric"], int8["unit"]) == ("real", "latency", "ms")
    assert (int8["runs"], int8["peak_rss_mb"], int8["delegate"], int8["threads"]) == (15, 56.0, "cpu", 1)
    assert target.cleaned
    assert any("box onnxruntime/cpu 1t [real]: int8.onnx p50 1.010 ms" in line and "x0.50 vs float" in line for line in logged)


def test_protocol_and_options_reach_the_script(files, monkeypatch, tmp_path):
    target = ScriptedTarget()
    inputs = tmp_path / "inputs.npz"
    inputs.write_bytes(b"")
    profile_on(target, monkeypatch, [files["float.tflite"]], inputs_npz=inputs,
               protocol=FAST | {"max_runs": 50, "rounds": 1})
    argv = target.calls[0]
    assert argv[:3] == ["python3", "/work/ondevice.py", "/work/0-float.tflite"]
    assert argv[3:] == ["--runtime", "litert", "--threads", "1", "--warmup", "1", "--min-runs", "5", "--min-seconds", "0",
                        "--max-runs", "50", "--inputs", "/work/inputs.npz", "--delegate", "xnnpack"]


def test_each_thread_count_and_delegate_is_measured_separately(files, monkeypatch):
    target = ScriptedTarget()
    entries, _ = profile_on(target, monkeypatch, [files["float.onnx"]], threads=[1, 2], device_threads=[4])
    assert [entry["threads"] for entry in entries] == [1, 2]
    assert [argv[argv.index("--threads") + 1] for argv in target.calls] == ["1"] * 3 + ["2"] * 3


def test_one_float_twin_shared_by_two_int8_files(files, monkeypatch):
    target = ScriptedTarget()
    twins = {"int8.onnx": files["float.onnx"], "qat_int8.onnx": files["float.onnx"]}
    entries, _ = profile_on(target, monkeypatch, [files["float.onnx"], files["int8.onnx"], files["qat_int8.onnx"]],
                            float_twins=twins, protocol=FAST | {"rounds": 2})
    assert models_run(target) == ["0-float.onnx", "1-int8.onnx", "2-qat_int8.onnx"] * 2
    assert [entry["ratio_to_float"] is not None for entry in entries] == [False, True, True]


def test_emulated_reports_instructions_and_no_latency(files, monkeypatch):
    target = ScriptedTarget(emulated=True)
    entries, _ = profile_on(target, monkeypatch, [files["int8.onnx"]], float_twins={"int8.onnx": files["float.onnx"]},
                            protocol=FAST | {"rounds": 1})
    assert all("--markers" in argv for argv in target.calls)
    int8 = entries[1]
    assert (int8["obtained"], int8["metric"], int8["unit"], int8["value"]) == ("emulated", "instructions", "instructions", 4e6)
    assert int8["ratio_to_float"] == 0.5


def test_simulated_gives_no_latency_and_no_ratio(files, monkeypatch):
    target = ScriptedTarget(simulated=True)
    entries, _ = profile_on(target, monkeypatch, [files["int8.onnx"]], kind="qnn-htp",
                            float_twins={"int8.onnx": files["float.onnx"]}, protocol=FAST | {"rounds": 1})
    assert all(argv[argv.index("--provider") + 1] == "qnn-htp" for argv in target.calls)
    int8 = entries[1]
    assert (int8["obtained"], int8["metric"], int8["ratio_to_float"]) == ("simulated", "simulator_wall_time", None)
    assert int8["value"] == 250.0  # the simulator's wall time, never a latency


def test_a_crashing_runtime_is_a_target_error_with_its_last_line(files, monkeypatch):
    target = ScriptedTarget(crash="cannot load 0-float.onnx: INVALID_PROTOBUF")
    with pytest.raises(TargetError, match=r"box: onnxruntime failed on float\.onnx \(exit code 1\): ondevice: cannot load"):
        profile_on(target, monkeypatch, [files["float.onnx"]])
    assert target.cleaned


def test_no_json_on_the_last_line_is_a_target_error(files, monkeypatch):
    with pytest.raises(TargetError, match=r"printed no JSON result for float\.onnx \(last line: Segmentation"):
        profile_on(ScriptedTarget(stdout_tail="{\"partial\nSegmentation fault"), monkeypatch, [files["float.onnx"]])


def test_artifacts_of_a_runtime_the_device_lacks_are_skipped(files, monkeypatch):
    target = ScriptedTarget(simulated=True)
    entries, logged = profile_on(target, monkeypatch, [files["float.tflite"]], kind="qnn-htp")
    assert entries == [] and target.calls == []
    assert "skipping float.tflite: device box does not run litert" in logged[0]


def test_bad_artifact_lists_are_user_errors(files, tmp_path):
    with pytest.raises(UserInputError, match="missing.onnx: artifact not found"):
        plan_groups([tmp_path / "missing.onnx"], {})
    (tmp_path / "model.pt").write_bytes(b"")
    with pytest.raises(UserInputError, match=r"no runtime runs '\.pt' files"):
        plan_groups([tmp_path / "model.pt"], {})
    with pytest.raises(UserInputError, match="float twin .* another runtime"):
        plan_groups([files["int8.tflite"]], {"int8.tflite": files["float.onnx"]})
