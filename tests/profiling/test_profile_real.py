"""profile_artifacts with the real on-device script on real model files: locally and over ssh.

The models: the session's shared files (tests/conftest.py ``models``): the trained MobileNet v1 alpha 0.25
at 32x32 as float ONNX, int8 QDQ ONNX (onnxruntime ``quantize_static``) and float TFLite, and real
Fashion-MNIST test images in an .npz.
"""

import json
import sys
from pathlib import Path

import pytest

import edgekit.profile
from edgekit.profile.cli import add_parser, format_table
from edgekit.profile.devices import DeviceProfile, machine_arch
from edgekit.profile.run import profile_artifacts
from edgekit.targets.base import TargetError

from targets.conftest_models import TEST_SAMPLES
from targets.test_ssh import OpenSshServer  # tests/targets/test_ssh.py

ONDEVICE = Path(edgekit.profile.__file__).parent / "ondevice.py"
PROTOCOL = {"warmup_runs": 3, "min_runs": 30, "min_seconds": 0, "rounds": 3, "timeout_seconds": 120}

pytestmark = pytest.mark.skipif(not ONDEVICE.is_file(), reason="edgekit/profile/ondevice.py (the on-device script) is not there yet")


@pytest.fixture(scope="module")
def models(models):
    """The session's shared model files (tests/conftest.py), by the names these tests use."""
    return {"float.onnx": models.float_onnx, "float.tflite": models.float_tflite, "int8.onnx": models.int8_onnx,
            "inputs.npz": models.inputs_npz}


def host_profile(**overrides) -> DeviceProfile:
    return DeviceProfile(name="test-host", kind="local", arch="auto", protocol=PROTOCOL, **overrides)


def check_entries(entries, models, device):
    by_artifact = {(entry["artifact"], entry["threads"]): entry for entry in entries}
    float_, int8 = by_artifact[(str(models["float.onnx"]), 1)], by_artifact[(str(models["int8.onnx"]), 1)]
    for entry in entries:
        assert entry["device"] == device and (entry["obtained"], entry["metric"]) == ("real", "latency")
        assert entry["runs"] >= 3 * PROTOCOL["min_runs"] and len(entry["rounds"]) == 3 and entry["spread_pct"] >= 0
        latency = entry["distribution"]
        assert 0 < latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p99"]
        assert entry["init_ms"] > 0 and entry["first_inference_ms"] > 0 and entry["peak_rss_mb"] > 10
        assert entry["host"]["machine"] == machine_arch() or entry["host"]["machine"] == "x86_64"
    assert [r["order"] for r in float_["rounds"]] == [0, 2, 4] and [r["order"] for r in int8["rounds"]] == [1, 3, 5]
    assert int8["ratio_to_float"] == pytest.approx(int8["value"] / float_["value"], abs=1e-3)
    assert float_["runtime"] == "onnxruntime" and float_["delegate_applied"] == "CPUExecutionProvider"
    return float_, int8


def test_local_float_and_int8_onnx_interleaved_plus_float_tflite(models):
    entries = profile_artifacts([models["int8.onnx"], models["float.tflite"]], host_profile(), log=lambda line: None,
                                float_twins={"int8.onnx": models["float.onnx"]}, inputs_npz=models["inputs.npz"])
    assert [entry["artifact"] for entry in entries] == [str(models[name]) for name in ("float.onnx", "int8.onnx", "float.tflite")]
    check_entries(entries, models, "test-host")
    tflite = entries[2]
    assert tflite["runtime"] == "litert" and tflite["delegate"] == "xnnpack" and tflite["ratio_to_float"] is None
    assert tflite["accuracy"]["samples"] == TEST_SAMPLES  # the .npz's labels reached the script
    assert "test-host" in format_table(entries) and "onnxruntime/cpu" in format_table(entries)


def test_corrupt_model_is_a_target_error_not_a_traceback(models, tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(models["float.onnx"].read_bytes()[:300])
    with pytest.raises(TargetError, match=r"test-host: onnxruntime failed on broken\.onnx \(exit code 1\): ondevice: "):
        profile_artifacts([broken], host_profile(), log=lambda line: None)


def test_profile_command_prints_json(models, capsys, tmp_path):
    import argparse

    device = tmp_path / "host.yaml"
    device.write_text("name: cli-host\nkind: local\narch: auto\nthreads: [1]\n"
                      "protocol: {warmup_runs: 2, min_runs: 10, min_seconds: 0, rounds: 2}\n")
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["profile", str(models["int8.onnx"]), "--device", str(device), "--json",
                              "--float-twin", f"{models['int8.onnx']}={models['float.onnx']}"])
    assert args.handler(args) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [entry["device"] for entry in entries] == ["cli-host"] * 2 and entries[1]["ratio_to_float"] > 0


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = OpenSshServer(tmp_path_factory.mktemp("sshd-profile"))
    yield server
    server.stop()


def test_over_ssh_float_and_int8_onnx_interleaved(models, sshd):
    device = sshd.profile(protocol=PROTOCOL, ssh={"python": sys.executable})
    entries = profile_artifacts([models["int8.onnx"]], device, log=lambda line: None,
                                float_twins={"int8.onnx": models["float.onnx"]})
    float_, int8 = check_entries(entries, models, "test-sshd")
    assert int8["target"]["kind"] == "ssh" and int8["target"]["port"] == sshd.port


def test_over_ssh_a_crashing_runtime_is_a_target_error(models, sshd, tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x00" * 64)
    with pytest.raises(TargetError, match=r"test-sshd: onnxruntime failed on broken\.onnx .*ondevice: cannot load"):
        profile_artifacts([broken], sshd.profile(protocol=PROTOCOL), log=lambda line: None)
