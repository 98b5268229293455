"""emulated-arm64: the qemu command line, the sysroot pieces, and real runs under qemu on a Cortex-A76.

The runs need `sudo bash scripts/setup-emulation.sh` and `edgekit devices setup` of a cortex-a76 profile
(sysroot in ~/.cache/edgekit/sysroot-arm64, or $EDGEKIT_TEST_SYSROOT); without them they skip, saying so.
"""

import importlib.util
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from edgekit.profile.devices import DeviceProfile
from edgekit.targets.base import TargetUnavailable
from edgekit.targets.emulated import EmulatedArm64Target
from edgekit.targets import sysroot
from targets.conftest_models import reference_logits, serve_or_skip
from targets.test_local import TargetContract

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "edgekit" / "profile" / "ondevice.py"
SYSROOT = os.environ.get("EDGEKIT_TEST_SYSROOT", "~/.cache/edgekit/sysroot-arm64")
RUNS = ["--warmup", "1", "--min-runs", "3", "--max-runs", "3", "--min-seconds", "0"]


def profile(qemu_cpu="cortex-a76", sysroot_dir=SYSROOT) -> DeviceProfile:
    return DeviceProfile(name=f"test-{qemu_cpu}", kind="emulated-arm64", arch="aarch64",
                         emulated_arm64={"qemu_cpu": qemu_cpu, "sysroot": str(sysroot_dir)})


def load_ondevice():
    spec = importlib.util.spec_from_file_location("ondevice_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- without emulation ----

def test_qemu_command_line_for_the_profiling_script(tmp_path):
    target = EmulatedArm64Target(profile(sysroot_dir=tmp_path))
    with target:
        counts = target.workdir / "c.txt"
        argv = target.qemu_argv(["python3", "ondevice.py", "m.tflite", "--threads", "1"], counts)
        view = tmp_path.resolve() / "cpu-cortex-a76"
        assert argv[:5] == ["qemu-aarch64", "-cpu", "cortex-a76", "-L", str(view)]
        assert f"PYTHONPATH={tmp_path.resolve() / 'base/opt/edgekit-site'}" in argv
        assert f"EDGEKIT_INSN_FILE={counts}" in argv
        plugin = argv[argv.index("-plugin") + 1]
        assert re.fullmatch(rf"{tmp_path.resolve()}/plugin/edgekit_insn-[0-9a-f]{{12}}\.so,out={counts},atomic=off", plugin)
        assert argv[-6:] == [str(view / "usr/bin/python3.11"), "ondevice.py", "m.tflite", "--threads", "1", "--markers"]
        threaded = target.qemu_argv(["python3", "ondevice.py", "m.tflite", "--threads=2", "--markers"], counts)
        assert threaded.count("--markers") == 1 and any(arg.endswith("atomic=on") for arg in threaded)
        other = target.qemu_argv(["/bin/true"], counts)
        assert other[-1] == "/bin/true" and "--markers" not in other
        assert target.emulated and target.describe()["qemu_cpu"] == "cortex-a76"


def test_never_qemu_cpu_max():
    with pytest.raises(Exception, match="qemu_cpu"):
        profile(qemu_cpu="max")


@pytest.mark.parametrize("qemu_cpu, name", [("cortex-a72", "Cortex-A72"), ("cortex-a76", "Cortex-A76"),
                                            ("neoverse-n1", "Neoverse-N1")])
def test_fake_cpuinfo_names_the_emulated_core(qemu_cpu, name):
    text = sysroot.CPU_MODELS[qemu_cpu].cpuinfo(sysroot.FAKE_CORES)
    parts = set(re.findall(r"CPU part\t: (0x[0-9a-f]+)", text))
    assert len(parts) == 1 and text.count("processor\t:") == sysroot.FAKE_CORES
    assert load_ondevice().ARM_PARTS[parts.pop()] == name
    has_dotprod = "asimddp" in sysroot.CPU_MODELS[qemu_cpu].features
    assert has_dotprod == (qemu_cpu != "cortex-a72")  # a kernel choice the fake file must not get wrong


def test_marker_constants_agree_between_script_and_plugin():
    source = (REPO / "edgekit/targets/qemu_insn.c").read_text()
    ondevice = load_ondevice()
    for name in ("MARKER_SYSCALL", "MARKER_BEGIN", "MARKER_END"):
        value = re.search(rf"#define {name} (0x[0-9A-Fa-f]+)", source)[1]
        assert int(value, 16) == getattr(ondevice, name), name


def test_mirror_comes_from_the_machines_apt_sources(tmp_path, monkeypatch):
    monkeypatch.delenv(sysroot.MIRROR_ENV, raising=False)
    (tmp_path / "sources.list.d").mkdir()
    assert sysroot.apt_mirror(tmp_path) is None
    (tmp_path / "sources.list.d" / "other.sources").write_text(
        "Types: deb-src\nURIs: http://127.0.0.1:9/source-only\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://127.0.0.1:9/security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://127.0.0.1:9/disabled\nSuites: bookworm\nEnabled: no\n")
    (tmp_path / "sources.list.d" / "old.list.disabled").write_text("deb http://127.0.0.1:9/ignored bookworm main\n")
    assert sysroot.apt_mirror(tmp_path) is None
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# http://127.0.0.1:9/comment\nURIs: http://127.0.0.1:8080/debian/ http://127.0.0.1:9/second\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n")
    assert sysroot.apt_mirror(tmp_path) == "http://127.0.0.1:8080/debian"
    assert sysroot.debian_mirror(etc_apt=tmp_path) == "http://127.0.0.1:8080/debian"
    (tmp_path / "sources.list").write_text("# deb http://127.0.0.1:9/commented bookworm main\n"
                                           "deb [arch=amd64 signed-by=/k.gpg] http://127.0.0.1:8081/mirror bookworm main\n")
    assert sysroot.apt_mirror(tmp_path) == "http://127.0.0.1:8081/mirror"


def test_mirror_option_and_environment_come_before_apt(tmp_path, monkeypatch):
    (tmp_path / "sources.list").write_text("deb http://127.0.0.1:8081/apt bookworm main\n")
    monkeypatch.setenv(sysroot.MIRROR_ENV, "http://127.0.0.1:8082/env/")
    assert sysroot.debian_mirror(etc_apt=tmp_path) == "http://127.0.0.1:8082/env"
    assert sysroot.debian_mirror("http://127.0.0.1:8083/opt", etc_apt=tmp_path) == "http://127.0.0.1:8083/opt"


def test_no_mirror_anywhere_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.delenv(sysroot.MIRROR_ENV, raising=False)
    with pytest.raises(TargetUnavailable) as caught:
        sysroot.debian_mirror(etc_apt=tmp_path)
    message = str(caught.value)
    assert "\n" not in message and "no Debian mirror for bookworm" in message and sysroot.MIRROR_ENV in message


def test_missing_tools_say_to_run_the_setup_script(monkeypatch, tmp_path):
    monkeypatch.setattr(sysroot.shutil, "which", lambda tool: None)
    with pytest.raises(TargetUnavailable, match=r"missing tools: .*debootstrap.*setup-emulation\.sh"):
        sysroot.setup_sysroot(tmp_path, "cortex-a76", say=lambda line: None)


def test_unbuilt_sysroot_is_unavailable_with_the_reason(tmp_path):
    ok, why = EmulatedArm64Target(profile(sysroot_dir=tmp_path)).available()
    assert not ok and ("setup-emulation.sh" in why and "devices setup" in why)


# ---- under qemu (needs the set-up sysroot) ----

@pytest.fixture(scope="module")
def a76():
    yield from serve_or_skip(EmulatedArm64Target(profile()), "emulated-arm64")



def profile_under_qemu(target, model: Path, *extra) -> dict:
    script = target.put(SCRIPT, "ondevice.py")
    remote = target.put(model, model.name)
    result = target.run(["python3", script, remote, *RUNS, *extra], timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_int8_needs_fewer_instructions_than_float_and_counts_repeat(a76, models):
    counts = {}
    for name in ("float_tflite", "int8_tflite"):
        result = profile_under_qemu(a76, getattr(models, name))
        assert result["latency_ms"] is None and result["init_ms"] is None and result["first_inference_ms"] is None
        assert result["peak_rss_mb"] is None  # qemu's own memory, not the board's
        assert result["host"]["machine"] == "aarch64" and result["host"]["cpu"] == "Cortex-A76"
        assert isinstance(result["instructions_per_inference"], int) and result["runs"] == 3
        spread = a76.instruction_spread()
        assert spread["runs"] == 3 and spread["median"] == result["instructions_per_inference"]
        assert spread["spread"] < 0.01  # TFLite's counts repeat (within a few hundred instructions)
        counts[name] = result["instructions_per_inference"]
    assert counts["int8_tflite"] < 0.8 * counts["float_tflite"]


def test_onnxruntime_under_qemu_matches_the_host_accuracy(a76, models):
    result = profile_under_qemu(a76, models.int8_onnx, "--inputs", a76.put(models.inputs_npz, "inputs.npz"))
    data = np.load(models.inputs_npz)
    host_top1 = float(np.mean(reference_logits(models.int8_onnx, data["images"]).argmax(1) == data["labels"]) * 100)
    assert result["accuracy"]["top1"] == pytest.approx(host_top1)
    assert result["runtime"] == "onnxruntime" and result["instructions_per_inference"] > 0


def test_setup_again_is_cached_and_quick(a76):
    lines = []
    started = time.monotonic()
    sysroot.setup_sysroot(SYSROOT, "cortex-a76", say=lines.append)
    assert time.monotonic() - started < 60
    assert [line.split(": ")[-1] for line in lines] == ["cached"] * 4


class TestEmulatedTargetContract(TargetContract):
    """The same put/run/get/timeout contract as a board: bare names run the sysroot's aarch64 tools."""

    @pytest.fixture
    def target(self, a76):
        target = EmulatedArm64Target(profile())
        yield target
        target.cleanup()

    def workdir_exists(self, target):
        return target._workdir is not None and target._workdir.exists()


def test_devices_cli_check_and_setup_say_what_is_missing(tmp_path, capsys, monkeypatch):
    import argparse

    from edgekit.profile.devices_cli import add_parser

    yaml = tmp_path / "a72.yaml"
    yaml.write_text(f"name: cli-a72\nkind: emulated-arm64\narch: aarch64\n"
                    f"emulated_arm64:\n  qemu_cpu: cortex-a72\n  sysroot: {tmp_path / 'sysroot'}\n")
    parser = argparse.ArgumentParser(prog="edgekit")
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["devices", "check", str(yaml)])
    assert args.handler(args) == 1
    assert capsys.readouterr().out.startswith("cli-a72 (emulated-arm64): not ready: the aarch64 sysroot is not built")
    monkeypatch.setattr(sysroot.shutil, "which", lambda tool: None)
    args = parser.parse_args(["devices", "setup", str(yaml)])
    with pytest.raises(TargetUnavailable, match="setup-emulation.sh"):
        args.handler(args)
