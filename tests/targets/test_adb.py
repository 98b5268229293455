"""adb target: benchmark_model's command line, its output parser, and the flow against a FAKE adb.

No phone here: the outputs in fixtures/ are hand-written in benchmark_model's documented format, and a
small fake ``adb`` on PATH records every call and answers like a phone with one device attached.
"""

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from edgekit.profile.devices import DeviceProfile
from edgekit.targets.adb import AdbTarget, benchmark_argv, ondevice_json, parse_benchmark_output
from edgekit.targets.base import TargetError, TargetUnavailable

FIXTURES = Path(__file__).with_name("fixtures")
BUILTIN = FIXTURES / "benchmark_model_builtin_op_profiling.txt"
XNNPACK = FIXTURES / "benchmark_model_xnnpack_single_thread.txt"
GPU_FAILED = FIXTURES / "benchmark_model_gpu_failed.txt"

FAKE_ADB = """\
#!{python}
import json, os, shutil, sys
args = sys.argv[1:]
with open(os.environ["FAKE_ADB_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if args[:1] == ["-s"]:
    args = args[2:]
if args == ["devices"]:
    print("List of devices attached")
    for serial in filter(None, os.environ.get("FAKE_ADB_DEVICES", "").split(",")):
        print(serial + "\\tdevice")
elif args[0] == "shell" and "--graph=" in args[1]:
    sys.stdout.write(open(os.environ["FAKE_ADB_OUTPUT"]).read())
    sys.exit(int(os.environ.get("FAKE_ADB_STATUS", "0")))
elif args[0] == "shell" and "mktemp -d" in args[1]:
    print(os.environ.get("FAKE_ADB_MKTEMP", "/data/local/tmp/ek/run.AbC12345"))
elif args[0] == "shell" and args[1].startswith("uname -m"):
    print("aarch64\\nSM8650\\nPixel-ish\\n8\\nschedutil")
elif args[0] == "pull":
    open(args[2], "w").write("pulled " + args[1])
"""


def profile(serial="R5CT1234", tmp_path=None) -> DeviceProfile:
    binary = tmp_path / "benchmark_model" if tmp_path else Path("/nonexistent/benchmark_model")
    return DeviceProfile(name="phone", kind="adb", arch="aarch64", runtimes=["litert"],
                         delegates={"litert": ["xnnpack", "gpu"]},
                         adb={"serial": serial, "benchmark_model": str(binary), "device_dir": "/data/local/tmp/ek"})


@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    adb = bin_dir / "adb"
    adb.write_text(FAKE_ADB.format(python=sys.executable))
    adb.chmod(0o755)
    (tmp_path / "benchmark_model").write_bytes(b"\x7fELF fake")
    log = tmp_path / "adb.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    monkeypatch.setenv("FAKE_ADB_DEVICES", "R5CT1234")
    monkeypatch.setenv("FAKE_ADB_OUTPUT", str(BUILTIN))
    return lambda: [json.loads(line) for line in log.read_text().splitlines()]


def test_parser_reads_timings_memory_and_the_op_tables():
    parsed = parse_benchmark_output(BUILTIN.read_text())
    assert (parsed.init_ms, parsed.first_inference_ms) == (4.873, 3.961)
    assert (parsed.warmup_avg_ms, parsed.inference_avg_ms) == (pytest.approx(1.6017), pytest.approx(1.5174))
    assert parsed.runs["count"] == 652 and parsed.runs["median"] == 1.503 and parsed.runs["min"] == 1.421
    assert (parsed.memory_init_mb, parsed.memory_overall_mb, parsed.peak_memory_mb) == (3.14453, 6.98047, 9.45312)
    assert len(parsed.per_node) == 8 and parsed.per_node[0] == {"name": "model/features/stem/conv/Conv2D",
                                                               "op_type": "CONV_2D", "ms": 0.412}
    assert [row["ms"] for row in parsed.top_nodes] == sorted((row["ms"] for row in parsed.top_nodes), reverse=True)
    assert parsed.by_op_type[0] == {"op_type": "CONV_2D", "count": 3, "ms": 0.983, "percent": 71.752}
    assert sum(row["count"] for row in parsed.by_op_type) == 8


def test_parser_without_median_or_peak_memory():
    parsed = parse_benchmark_output(XNNPACK.read_text())
    assert parsed.runs["count"] == 3612 and "median" not in parsed.runs and parsed.peak_memory_mb is None
    assert parsed.per_node == [{"name": "StatefulPartitionedCall:0", "op_type": "TfLiteXNNPackDelegate", "ms": 5.481}]
    output = ondevice_json(parsed, model="/data/local/tmp/ek/0-float.tflite", delegate="xnnpack", threads=1, host={})
    assert output["latency_ms"]["p50"] == output["latency_ms"]["mean"] == pytest.approx(5.5361)
    assert output["latency_note"] and output["peak_rss_mb"] == 16.4102 and output["model"] == "0-float.tflite"
    # benchmark_model gave a mean and a memory-footprint delta here: the output says so
    assert (output["latency_statistic"], output["memory_statistic"]) == ("mean", "footprint delta")


def test_median_and_peak_memory_are_labelled_as_such():
    output = ondevice_json(parse_benchmark_output(BUILTIN.read_text()), model="m.tflite", delegate="xnnpack",
                           threads=1, host={})
    assert (output["latency_statistic"], output["memory_statistic"]) == ("median", "peak footprint")


def test_parser_rejects_a_failed_run_with_its_last_line():
    with pytest.raises(TargetError, match="no 'Inference timings in us' line: ERROR: Benchmarking failed"):
        parse_benchmark_output(GPU_FAILED.read_text())


@pytest.mark.parametrize("delegate, flags", [
    ("xnnpack", ["--use_xnnpack=true"]), ("none", ["--use_xnnpack=false"]), ("gpu", ["--use_gpu=true"]),
    ("nnapi", ["--use_nnapi=true"]), ("hexagon", ["--use_hexagon=true", "--hexagon_lib_path=/data/local/tmp/ek"]),
])
def test_benchmark_command_line_per_delegate(delegate, flags):
    argv = benchmark_argv("/data/local/tmp/ek/benchmark_model", "/data/local/tmp/ek/m.tflite", threads=4,
                          delegate=delegate, warmup=10, min_runs=1024, min_seconds=20.0)
    assert argv == ["/data/local/tmp/ek/benchmark_model", "--graph=/data/local/tmp/ek/m.tflite", "--num_threads=4",
                    *flags, "--warmup_runs=10", "--num_runs=1024", "--min_secs=20", "--enable_op_profiling=true"]


def test_unknown_delegate_is_an_error():
    with pytest.raises(TargetError, match="unknown delegate 'coreml'"):
        benchmark_argv("b", "m", threads=1, delegate="coreml", warmup=1, min_runs=1, min_seconds=0)


def test_profiling_script_call_becomes_a_benchmark_model_run(fake_adb, tmp_path):
    model = tmp_path / "int8.tflite"
    model.write_bytes(b"TFL3")
    with AdbTarget(profile(tmp_path=tmp_path)) as target:
        remote = target.put(model, "1-int8.tflite")
        result = target.run([target.python, "/data/local/tmp/ek/ondevice.py", remote, "--runtime", "litert",
                             "--threads", "4", "--warmup", "10", "--min-runs", "50", "--min-seconds", "1",
                             "--delegate", "none"], timeout=60)
    calls = fake_adb()
    assert all(call[:2] == ["-s", "R5CT1234"] for call in calls if call != ["devices"])
    run_dir = "/data/local/tmp/ek/run.AbC12345"
    assert ["-s", "R5CT1234", "shell", "mkdir -p /data/local/tmp/ek && mktemp -d /data/local/tmp/ek/run.XXXXXXXX"] in calls
    assert ["-s", "R5CT1234", "push", str(tmp_path / "benchmark_model"), f"{run_dir}/benchmark_model"] in calls
    assert ["-s", "R5CT1234", "push", str(model), f"{run_dir}/1-int8.tflite"] in calls
    bench = next(call for call in calls if call[2:3] == ["shell"] and "--graph=" in call[3])
    assert bench[3] == (f"{run_dir}/benchmark_model --graph={run_dir}/1-int8.tflite --num_threads=4 "
                        "--use_xnnpack=false --warmup_runs=10 --num_runs=50 --min_secs=1 --enable_op_profiling=true")
    # only the session's own directory is removed, never the configured device_dir
    assert calls[-1] == ["-s", "R5CT1234", "shell", f"rm -rf -- {run_dir}"]
    assert not any(call[2:3] == ["shell"] and "rm " in call[3] and run_dir not in call[3] for call in calls)
    output = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.returncode == 0 and output["delegate"] == "none" and output["threads"] == 4
    assert output["latency_ms"]["p50"] == 1.503 and output["runs"] == 652 and output["peak_rss_mb"] == 9.45312
    assert output["host"] == {"machine": "aarch64", "cpu": "SM8650", "cores": 8, "governor": "schedutil"}
    assert len(output["per_node"]) == 8 and output["accuracy"] is None


def test_failed_benchmark_is_a_non_zero_result_with_one_line(fake_adb, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_ADB_OUTPUT", str(GPU_FAILED))
    monkeypatch.setenv("FAKE_ADB_STATUS", "1")
    with AdbTarget(profile(tmp_path=tmp_path)) as target:
        target.put(BUILTIN, "m.tflite")
        result = target.run(["python3", "ondevice.py", "/data/local/tmp/ek/m.tflite", "--delegate", "gpu"], timeout=60)
    assert result.returncode == 1 and result.stderr == "benchmark_model failed: ERROR: Benchmarking failed.\n"


def test_other_commands_run_in_adb_shell_quoted(fake_adb, tmp_path):
    with AdbTarget(profile(tmp_path=tmp_path)) as target:
        target.run(["ls", "-l", "a b"], timeout=10)
        assert target.get("x.txt", tmp_path / "x.txt").read_text() == "pulled /data/local/tmp/ek/run.AbC12345/x.txt"
    assert ["-s", "R5CT1234", "shell", "ls -l 'a b'"] in fake_adb()


def test_unexpected_mktemp_answer_is_refused(fake_adb, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_ADB_MKTEMP", "/data/local/tmp")
    with AdbTarget(profile(tmp_path=tmp_path)) as target:
        with pytest.raises(TargetError, match="mktemp -d under /data/local/tmp/ek on the phone gave '/data/local/tmp'"):
            target.put(BUILTIN, "m.tflite")
    assert not any(call[2:3] == ["shell"] and "rm " in call[3] for call in fake_adb())


def test_device_dir_must_be_an_absolute_directory_below_root():
    for bad in ("/", "relative/dir"):
        with pytest.raises(ValueError, match="absolute directory"):
            DeviceProfile(name="p", kind="adb", arch="aarch64", runtimes=["litert"],
                          adb={"benchmark_model": "b", "device_dir": bad})


def test_missing_adb_is_unavailable(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    target = AdbTarget(profile(tmp_path=tmp_path))
    ok, why = target.available()
    assert not ok and why.startswith("adb not found; install Android platform-tools")
    with pytest.raises(TargetUnavailable, match="phone: adb not found"):
        target.put(BUILTIN, "m.tflite")


def test_no_device_or_wrong_serial_is_unavailable(fake_adb, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_ADB_DEVICES", "")
    assert AdbTarget(profile(serial=None, tmp_path=tmp_path)).available() == (False, "no device attached (adb devices)")
    monkeypatch.setenv("FAKE_ADB_DEVICES", "OTHER1,OTHER2")
    ok, why = AdbTarget(profile(tmp_path=tmp_path)).available()
    assert not ok and why == "no device with serial R5CT1234 attached (adb devices: OTHER1, OTHER2)"
    ok, why = AdbTarget(profile(serial=None, tmp_path=tmp_path)).available()
    assert not ok and why == "2 devices attached; set adb.serial"


def test_missing_benchmark_model_binary_is_unavailable(fake_adb):
    ok, why = AdbTarget(profile()).available()
    assert not ok and "benchmark_model not found at /nonexistent/benchmark_model" in why


def test_fixture_files_say_they_are_hand_written():
    readme = (FIXTURES / "README.md").read_text()
    assert "hand-written" in readme and "not captured from a phone" in readme
    assert textwrap.dedent(readme).strip()
