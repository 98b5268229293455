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
from edgekit.profile.devices import KIND_SECTIONS, DeviceProfile, device_schema_markdown, machine_arch
from edgekit.targets import list_targets
from edgekit.targets.base import DeviceProfileError

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "devices").glob("*.yaml"))


def test_all_devices_are_shipped():
    names = {path.stem for path in SHIPPED}
    assert names == {"host", "host-smoke", "raspberry-pi-4", "android-adb", "snapdragon-htp-simulated",
                     "arm64-cortex-a72-emulated", "arm64-cortex-a76-emulated", "arm64-neoverse-n1-emulated"}


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
    "wrong type": (BASE + "threads: [1, two]\nssh:\n  host: h\n", r"d\.yaml:4: threads\.1: .*integer.*'two'"),
    "wrong port type": (BASE + "ssh:\n  host: h\n  port: ssh\n", r"d\.yaml:6: ssh\.port: .*integer.*'ssh'"),
    "bad kind": ("name: d\nkind: sssh\narch: aarch64\n", r"d\.yaml:2: kind: .*'ssh'.*'sssh'"),
    "bad delegate": (BASE + "delegates:\n  litert: [xnnpack, gpu]\nssh:\n  host: h\n",
                     r"d\.yaml:5: delegates\.litert\.1: kind ssh supports litert with xnnpack, none \(got 'gpu'\)"),
    "zero threads": (BASE + "threads: [0]\nssh:\n  host: h\n", r"d\.yaml:4: threads: thread counts must be 1 or more"),
    "bad protocol": (BASE + "protocol:\n  min_runs: 0\nssh:\n  host: h\n", r"d\.yaml:5: protocol\.min_runs: .*greater than or equal to 1"),
    "missing kind section": (BASE, r"d\.yaml:2: kind: kind ssh needs its section 'ssh:'"),
    "section of another kind": ("name: d\nkind: local\narch: auto\nadb:\n  benchmark_model: b\n",
                                r"d\.yaml:4: adb: section 'adb' belongs to kind adb, but this profile's kind is local"),
    "auto arch off host": (BASE.replace("aarch64", "auto") + "ssh:\n  host: h\n", r"d\.yaml:3: arch: arch auto is only allowed for kind local"),
    "option-like host": (BASE + "ssh:\n  host: -oProxyCommand=x\n", r"d\.yaml:5: ssh\.host: must be a plain name"),
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
    assert set(KIND_SECTIONS) == set(list_targets())


def test_docs_embed_the_generated_schema_table():
    docs = (REPO / "docs/devices.md").read_text()
    assert device_schema_markdown() in docs, "docs/devices.md is stale: paste device_schema_markdown()'s table"
    for path in SHIPPED:
        assert f"`devices/{path.name}`" in docs
