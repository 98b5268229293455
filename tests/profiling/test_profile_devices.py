"""Device profiles: every shipped file validates; bad files give one line with file:line:key; docs in sync.

(tests/profile has no __init__.py on purpose: a test package named ``profile`` would shadow the
standard library's ``profile`` module, which cProfile and so torch._dynamo import.)
"""

import argparse
import re
from pathlib import Path

import pytest

from edgekit.profile import load_device_profile
from edgekit.profile.cli import add_parser
from edgekit.profile.devices import DeviceProfile, capabilities_markdown, device_schema_markdown, machine_arch
from edgekit.targets import list_targets, settings_key, target_classes
from edgekit.targets.base import DeviceProfileError

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "devices").glob("*.yaml"))


def test_all_devices_are_shipped():
    names = {path.stem for path in SHIPPED}
    assert names == {"host", "host-smoke", "host-all-runtimes", "raspberry-pi-4", "android-adb", "snapdragon-htp-simulated",
                     "arm64-cortex-a72-emulated", "arm64-cortex-a76-emulated", "arm64-neoverse-n1-emulated",
                     "ethos-u55-128", "ethos-u65-256", "ethos-u85-256"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_profiles_validate(path):
    profile = load_device_profile(path)
    assert profile.name == path.stem
    assert profile.kind in list_targets()
    assert profile.description


def test_shipped_profiles_say_what_they_are():
    profiles = {path.stem: load_device_profile(path) for path in SHIPPED}
    assert profiles["host"].kind == "local" and profiles["host"].resolved_arch == machine_arch()
    pi = profiles["raspberry-pi-4"]
    assert (pi.kind, pi.cpu, pi.ssh.host, pi.ssh.user, max(pi.threads)) == ("ssh", "Cortex-A72", "raspberrypi.local", "pi", 4)
    assert profiles["android-adb"].delegates.litert == ["xnnpack", "gpu", "nnapi", "hexagon"]
    htp = profiles["snapdragon-htp-simulated"]
    assert (htp.kind, htp.qnn_htp.htp_arch, htp.qnn_htp.soc_model) == ("qnn-htp", 75, 57)
    for stem, cpu in (("arm64-cortex-a72-emulated", "cortex-a72"), ("arm64-cortex-a76-emulated", "cortex-a76"),
                      ("arm64-neoverse-n1-emulated", "neoverse-n1")):
        emulated = profiles[stem]
        assert emulated.emulated_arm64.qemu_cpu == cpu and emulated.protocol.rounds == 1  # counts are deterministic


def test_defaults_meet_mlperf_minimum_over_the_rounds():
    protocol = DeviceProfile(name="d", kind="local", arch="auto").protocol
    assert protocol.min_runs * protocol.rounds >= 1024 and protocol.min_seconds * protocol.rounds >= 60


BASE = "name: d\nkind: ssh\narch: aarch64\n"
BAD_PROFILES = {
    "unknown key": (BASE + "ssh:\n  host: h\n  prot: 22\n", r"d\.yaml:6: unknown key 'ssh\.prot' in ssh \(did you mean 'port'\?\)"),
    "unknown top key": (BASE + "thread: [1]\nssh:\n  host: h\n", r"d\.yaml:4: unknown key 'thread' in the file \(did you mean 'threads'\?\)"),
    "wrong type": (BASE + "threads: [1, two]\nssh:\n  host: h\n", r"d\.yaml:4: threads\.1: .*integer.*two"),
    "wrong port type": (BASE + "ssh:\n  host: h\n  port: ssh\n", r"d\.yaml:6: ssh\.port: .*integer.*ssh"),
    "bad kind": ("name: d\nkind: sssh\narch: aarch64\n", r"d\.yaml:2: kind: .*'ssh'.*'sssh'"),
    "bad delegate": (BASE + "delegates:\n  litert: [xnnpack, gpu]\nssh:\n  host: h\n",
                     r"d\.yaml:5: delegates\.litert\.1: kind ssh supports litert with xnnpack, none \(got 'gpu'\)"),
    "zero threads": (BASE + "threads: [0]\nssh:\n  host: h\n", r"d\.yaml:4: threads\.0: thread counts must be 1 to 256 on kind ssh"),
    "bad protocol": (BASE + "protocol:\n  min_runs: 0\nssh:\n  host: h\n", r"d\.yaml:5: protocol\.min_runs: .*greater than or equal to 1"),
    "missing kind section": (BASE, r"d\.yaml:2: kind: kind ssh needs its section 'ssh:'"),
    "section of another kind": ("name: d\nkind: local\narch: auto\nadb:\n  benchmark_model: b\n",
                                r"d\.yaml:4: adb: section 'adb' belongs to kind adb, but this profile's kind is local"),
    "auto arch off host": (BASE.replace("aarch64", "auto") + "ssh:\n  host: h\n", r"d\.yaml:3: arch: arch auto is only allowed for kind local"),
    "option-like host": (BASE + "ssh:\n  host: -oProxyCommand=x\n", r"d\.yaml:5: ssh\.host: must be a host name"),
    "command substitution host": (BASE + "ssh:\n  host: $(touch x)\n", r"d\.yaml:5: ssh\.host: must be a host name"),
    "backtick host": (BASE + "ssh:\n  host: '`id`.local'\n", r"d\.yaml:5: ssh\.host: must be a host name"),
    "semicolon host": (BASE + "ssh:\n  host: 'pi;reboot'\n", r"d\.yaml:5: ssh\.host: must be a host name"),
    "pipe host": (BASE + "ssh:\n  host: 'pi|sh'\n", r"d\.yaml:5: ssh\.host: must be a host name"),
    "quoted host": (BASE + "ssh:\n  host: \"pi'\"\n", r"d\.yaml:5: ssh\.host: must be a host name"),
    "login in host": (BASE + "ssh:\n  host: pi@board\n", r"d\.yaml:5: ssh\.host: must be a host name"),
    "odd user": (BASE + "ssh:\n  host: h\n  user: 'pi;id'\n", r"d\.yaml:6: ssh\.user: must be a plain user name"),
    "boolean thread": (BASE + "threads: [true]\nssh:\n  host: h\n", r"d\.yaml:4: threads\.0: .*valid integer.*True"),
    "float thread": (BASE + "threads: [2.0]\nssh:\n  host: h\n", r"d\.yaml:4: threads\.0: .*valid integer"),
    "huge thread count": (BASE + "threads: [1000000000]\nssh:\n  host: h\n", r"d\.yaml:4: threads\.0: thread counts must be 1 to 256 on kind ssh"),
    "qemu thread count": ("name: d\nkind: emulated-arm64\narch: aarch64\nthreads: [1, 4096]\nemulated_arm64:\n  qemu_cpu: cortex-a76\n",
                          r"d\.yaml:4: threads\.1: thread counts must be 1 to 64 on kind emulated-arm64"),
    "huge min_runs": (BASE + "protocol:\n  min_runs: 100000000000000000000\nssh:\n  host: h\n", r"d\.yaml:5: protocol\.min_runs: .*less than or equal to 10000000"),
    "float min_runs": (BASE + "protocol:\n  min_runs: 1.0e+20\nssh:\n  host: h\n", r"d\.yaml:5: protocol\.min_runs: .*valid integer"),
    "infinite min_seconds": (BASE + "protocol:\n  min_seconds: .inf\nssh:\n  host: h\n", r"d\.yaml:5: protocol\.min_seconds: must be a finite number"),
    "nan timeout": (BASE + "protocol:\n  timeout_seconds: .nan\nssh:\n  host: h\n", r"d\.yaml:5: protocol\.timeout_seconds: must be a finite number"),
    "huge timeout": (BASE + "protocol:\n  timeout_seconds: 1.0e+300\nssh:\n  host: h\n", r"d\.yaml:5: protocol\.timeout_seconds: .*less than or equal to 86400"),
    "boolean rounds": (BASE + "protocol:\n  rounds: yes\nssh:\n  host: h\n", r"d\.yaml:5: protocol\.rounds: .*valid integer"),
    "missing required": ("kind: local\narch: auto\n", r"d\.yaml: name: Field required"),
    "malformed yaml": (BASE + "ssh:\n  host: [h\n", r"d\.yaml:\d+: malformed YAML"),
    "not a mapping": ("- local\n", r"d\.yaml: a device profile must be a mapping"),
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "d.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", BAD_PROFILES)
def test_bad_profile_gives_one_line_with_location(tmp_path, name):
    text, pattern = BAD_PROFILES[name]
    with pytest.raises(DeviceProfileError) as caught:
        load_device_profile(write(tmp_path, text))
    message = str(caught.value)
    assert "\n" not in message and re.search(pattern, message), message
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("host", ["raspberrypi.local", "pi-4", "192.168.1.20", "::1", "fe80::1%eth0", "board_7.lan."])
def test_plain_host_names_and_addresses_load(tmp_path, host):
    assert load_device_profile(write(tmp_path, BASE + f"ssh:\n  host: '{host}'\n")).ssh.host == host


def test_local_threads_are_bounded_by_this_machines_cores(tmp_path, monkeypatch):
    from edgekit.targets import base

    monkeypatch.setattr(base, "usable_cores", lambda: 2)
    assert load_device_profile(write(tmp_path, "name: d\nkind: local\narch: auto\nthreads: [1, 2]\n")).threads == [1, 2]
    with pytest.raises(DeviceProfileError, match=r"threads\.0: thread counts must be 1 to 2 on kind local \(this machine has 2 usable cores\)"):
        load_device_profile(write(tmp_path, "name: d\nkind: local\narch: auto\nthreads: [3]\n"))


def test_non_utf8_profile_is_one_line(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_bytes(b"name: d\nkind: local\narch: auto\ndescription: \xff\xfe\x00bad\n")
    with pytest.raises(DeviceProfileError) as caught:
        load_device_profile(path)
    assert "\n" not in str(caught.value) and "d.yaml" in str(caught.value)


def test_a_new_target_is_one_class_and_its_registration(monkeypatch):
    """The schema, the section rules and the capability checks all come from the registry."""
    import sys
    import types

    from pydantic import Field

    from edgekit import targets
    from edgekit.profile.devices import device_profile_model
    from edgekit.targets.base import Capabilities, TargetSettings
    from edgekit.targets.local import LocalTarget

    class BoardSettings(TargetSettings):
        port: int = Field(7, description="Port of the test board.")

    class BoardTarget(LocalTarget):
        kind = "test-board"
        settings_model = BoardSettings
        capabilities = Capabilities(runtimes={"onnxruntime": ("cpu", "npu")}, measures="simulated", max_threads=3)

    module = types.ModuleType("edgekit_test_board")
    module.BoardTarget = BoardTarget
    monkeypatch.setitem(sys.modules, "edgekit_test_board", module)
    monkeypatch.setitem(targets._TARGETS, "test-board", "edgekit_test_board:BoardTarget")
    model = device_profile_model()
    profile = model(name="b", kind="test-board", arch="aarch64", runtimes=["onnxruntime"],
                    delegates={"onnxruntime": ["npu"]}, threads=[3], test_board={"port": 9})
    assert profile.section.port == 9 and profile.target_class is BoardTarget and BoardTarget.simulated
    with pytest.raises(ValueError, match="thread counts must be 1 to 3 on kind test-board"):
        model(name="b", kind="test-board", arch="aarch64", runtimes=["onnxruntime"], threads=[4], test_board={})
    with pytest.raises(ValueError, match="kind local supports onnxruntime with cpu"):
        model(name="h", kind="local", arch="auto", delegates={"onnxruntime": ["npu"]})
    monkeypatch.delitem(targets._TARGETS, "test-board")
    assert "test_board" not in device_profile_model().model_fields


def test_missing_profile_file(tmp_path):
    with pytest.raises(DeviceProfileError, match=r"nope\.yaml: device profile file not found"):
        load_device_profile(tmp_path / "nope.yaml")


def _cli(argv: list[str]) -> int:
    """What edgekit.cli.main does with the profile command (until it is wired there)."""
    parser = argparse.ArgumentParser(prog="edgekit")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except DeviceProfileError as exc:
        print(f"edgekit: error: {exc}", file=__import__("sys").stderr)
        return exc.exit_code


@pytest.mark.parametrize("name", ["unknown key", "missing kind section", "malformed yaml"])
def test_profile_command_exits_2_with_one_line(tmp_path, capsys, name):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    assert _cli(["profile", str(model), "--device", str(write(tmp_path, BAD_PROFILES[name][0]))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgekit: error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_profile_command_through_edgekit_main_once_wired(tmp_path, capsys):
    from edgekit.cli import main

    try:
        code = main(["profile", str(tmp_path / "m.onnx"), "--device", str(write(tmp_path, BASE))])
    except SystemExit:
        pytest.skip("`edgekit profile` is not wired into edgekit.cli yet")
    assert code == 2 and "needs its section 'ssh:'" in capsys.readouterr().err


def test_every_kind_has_a_section_rule_and_a_target():
    for kind, cls in target_classes().items():
        assert cls.kind == kind and cls.capabilities.runtimes
        assert (settings_key(kind) in DeviceProfile.model_fields) == (cls.settings_model is not None)


def test_docs_embed_the_generated_schema_table():
    docs = (REPO / "docs/devices.md").read_text()
    assert device_schema_markdown() in docs, "docs/devices.md is stale: paste device_schema_markdown()'s table"
    assert capabilities_markdown() in docs, "docs/devices.md is stale: paste capabilities_markdown()'s table"
    for path in SHIPPED:
        assert f"`devices/{path.name}`" in docs
