"""ethos-u: Arm's Ethos-U NPUs through Vela, its compiler: estimates, per-layer rows, strict mode, bad profiles.

Needs the `ethos-u` extra (ethos-u-vela==5.2.0); without it these tests skip, saying so. The models are the
session's trained MobileNet (tests/conftest.py `trained_tiny`, exported by `models`).
"""

import json
import shutil
from pathlib import Path

import pytest

from edgekit.errors import UserInputError
from edgekit.profile import load_device_profile, profile_artifacts
from edgekit.profile.devices import DeviceProfile
from edgekit.report.schema import report_schema, validate_against
from edgekit.targets import TargetError
from edgekit.targets import ethos_u
from edgekit.targets.ethos_u import EthosUCpuOps

from conftest import REPO

pytest.importorskip("ethosu.vela", reason="Vela is not installed: pip install 'edgekit[ethos-u]' (ethos-u-vela)")

PROFILES = ("ethos-u55-128", "ethos-u65-256", "ethos-u85-256")
ESTIMATES = {"npu_cycles": "cycles", "total_cycles": "cycles", "estimated_inference_time": "ms", "sram_used": "KiB",
             "dram_used": "KiB", "off_chip_flash_used": "KiB", "npu_ops": "ops", "cpu_ops": "ops", "macs": "MACs"}


def device(name: str = "ethos-u55-128", **settings) -> DeviceProfile:
    profile = load_device_profile(REPO / "devices" / f"{name}.yaml")
    for key, value in settings.items():
        setattr(profile.ethos_u, key, value)
    return profile


def estimate(paths, profile, **options) -> list[dict]:
    return profile_artifacts([Path(path) for path in paths], profile, log=lambda line: None, **options)


@pytest.fixture(scope="module")
def layers(models):
    import torch

    from edgekit.models.layers import model_layers

    return model_layers(models.torch_model, torch.zeros(1, 3, 32, 32))


@pytest.fixture(scope="module")
def float_io_int8(models) -> Path:
    """The int8 model written with float32 input and output (recipe `export.tflite_io: float32`): its QUANTIZE
    takes float32, which the Ethos-U cannot, so Vela leaves it (and the DEQUANTIZE) on the CPU."""
    from edgekit.export import write_tflite
    from edgekit.quantize import get_backend
    from edgekit.quantize.algorithm import ptq
    from targets.conftest_models import _example

    backend = get_backend("pt2e")
    quantized = ptq(backend, models.trained.model(), _example(2)[0], list(models.calibration.split(16)), per_channel=True)
    return write_tflite(quantized.converted, _example()[0], models.folder / "int8_float_io.tflite", io="float32",
                        **backend.export_options(quantized.converted, "tflite"))


def test_the_accelerators_are_vela_s():
    from ethosu.vela.architecture_features import Accelerator

    assert ethos_u.ACCELERATORS == tuple(accelerator.value for accelerator in Accelerator)


@pytest.mark.parametrize("name", PROFILES)
def test_shipped_profiles_name_vela_s_own_configs(name):
    profile = device(name)
    assert profile.kind == "ethos-u" and profile.ethos_u.accelerator == name and profile.ethos_u.strict
    assert profile.ethos_u.system_config in ethos_u.vela_config_names("System_Config")
    assert profile.ethos_u.memory_mode in ethos_u.vela_config_names("Memory_Mode")


@pytest.mark.parametrize("key, value, listed", [
    ("system_config", "Ethos_U55_Fast", "Ethos_U55_High_End_Embedded, Ethos_U65_Embedded"),
    ("memory_mode", "Shared", "Sram_Only, Shared_Sram, Dedicated_Sram"),
    ("accelerator", "ethos-u99-7", "'ethos-u55-128', 'ethos-u55-256'"),
])
def test_a_name_vela_does_not_know_is_one_line_listing_the_valid_names(tmp_path, key, value, listed):
    text = (REPO / "devices/ethos-u55-128.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace(f"{key}: {getattr(device().ethos_u, key)}", f"{key}: {value}"))
    with pytest.raises(UserInputError) as caught:
        load_device_profile(bad)
    message = str(caught.value)
    assert "\n" not in message and f"ethos_u.{key}" in message and value in message and listed in message


@pytest.mark.parametrize("name", PROFILES)
def test_int8_tflite_gets_vela_s_estimates_typed_and_per_layer(models, layers, tmp_path, name):
    int8, float_twin = models.int8_tflite, models.float_tflite
    entries = estimate([int8], device(name), float_twins={str(int8): float_twin}, layers=layers, keep_dir=tmp_path)
    by_file = {Path(entry["artifact"]).name: entry for entry in entries}
    entry, float_entry = by_file[int8.name], by_file[float_twin.name]
    schema = {"$defs": report_schema()["$defs"], "$ref": "#/$defs/profile"}
    for one in entries:
        validate_against(schema, json.loads(json.dumps(one)), f"{one['artifact']} on {name}")
        assert one["obtained"] == "estimated" and one["metric"] != "latency" and one["threads"] == 1
    assert (entry["metric"], entry["unit"], entry["runtime"], entry["delegate"]) == ("cycles", "cycles", "litert", "ethos-u")
    found = {figure["metric"]: figure for figure in entry["estimate"]["estimates"]}
    assert {metric: figure["unit"] for metric, figure in found.items() if metric in ESTIMATES} == ESTIMATES
    assert all(figure["obtained"] == "estimated" and figure["distribution"] is None for figure in found.values())
    assert entry["value"] == found["total_cycles"]["value"] >= found["npu_cycles"]["value"] > 1000
    clock_mhz = entry["estimate"]["config"]["core_clock_mhz"]
    assert found["estimated_inference_time"]["value"] == pytest.approx(entry["value"] / clock_mhz / 1000, rel=1e-3)
    assert found["sram_used"]["value"] > 0 and found["npu_ops"]["value"] > 20 and found["cpu_ops"]["value"] == 0
    assert entry["estimate"]["cpu_ops"] == [] and "estimates" in entry["estimate"]["caveat"]
    convs = [row for row in entry["estimate"]["per_layer"] if row["layer"] is not None]
    assert [row["layer"] for row in convs] == [layer.name for layer in layers]
    assert all(row["target"] == "NPU" and row["cycles"] > 0 and 0 < row["mac_util_pct"] <= 100 for row in convs)
    assert {row["op"] for row in convs} == {"Conv2D", "DepthwiseConv2D", "FullyConnected"}
    compiled = Path(entry["estimate"]["files"]["compiled"])
    assert compiled.parent == tmp_path / name and compiled.read_bytes().count(b"ethos-u") >= 1
    assert float_entry["value"] is None and float_entry["estimate"]["supported"] is False
    assert "float" in float_entry["estimate"]["reason"] and float_entry["note"].startswith("not supported: a float file")
    assert entry["ratio_to_float"] is None  # a float file has no NPU estimate to compare with


def test_strict_profile_fails_naming_the_ops_vela_leaves_on_the_cpu(float_io_int8):
    with pytest.raises(EthosUCpuOps) as caught:
        estimate([float_io_int8], device())
    message = str(caught.value)
    assert "\n" not in message and float_io_int8.name in message and "ethos-u55-128" in message
    assert "Quantize" in message and "Dequantize" in message and "strict" in message
    assert {op["op"] for op in caught.value.ops} == {"Quantize", "Dequantize"}


def test_without_strict_the_cpu_ops_are_reported(float_io_int8):
    (entry,) = estimate([float_io_int8], device(strict=False))
    cpu_ops = entry["estimate"]["cpu_ops"]
    assert {op["op"] for op in cpu_ops} == {"Quantize", "Dequantize"}
    assert any("Float32" in (op["reason"] or "") for op in cpu_ops)
    found = {figure["metric"]: figure["value"] for figure in entry["estimate"]["estimates"]}
    assert found["cpu_ops"] >= 2 and found["npu_ops"] > 20 and entry["value"] > 0


def test_a_vela_crash_is_one_line_naming_the_file(models, tmp_path, monkeypatch):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"TFL3" + bytes(range(256)) * 4)  # Vela cannot read it

    def vela_on_junk(model, settings, out_dir):
        return [str(junk) if arg == str(model) else arg for arg in real_argv(model, settings, out_dir)]

    real_argv = ethos_u.vela_argv
    monkeypatch.setattr(ethos_u, "vela_argv", vela_on_junk)
    with pytest.raises(TargetError) as caught:
        estimate([models.int8_tflite], device())
    message = str(caught.value)
    assert "\n" not in message and "Vela failed on" in message and models.int8_tflite.name in message


def test_devices_check_says_ready_without_an_on_device_script(capsys):
    from edgekit.cli import main

    assert main(["devices", "check", str(REPO / "devices/ethos-u85-256.yaml")]) == 0
    assert capsys.readouterr().out.strip() == "ethos-u85-256 (ethos-u): ready"


def test_without_vela_the_target_says_how_to_install_it(monkeypatch):
    from edgekit.targets import make_target

    monkeypatch.setattr(ethos_u, "vela_ini", lambda: None)
    target = make_target(device(), check_available=False)
    ok, why = target.available()
    assert not ok and "edgekit[ethos-u]" in why


def test_report_html_and_summary_show_the_estimate_as_estimated(models, layers, tmp_path):
    from edgekit.report.estimate_html import estimate_block, estimate_lines

    int8 = models.int8_tflite
    entries = estimate([int8], device("ethos-u65-256"), float_twins={str(int8): models.float_tflite}, layers=layers,
                       keep_dir=tmp_path)
    (entry,) = [one for one in entries if one["value"] is not None]
    page = estimate_block(entry)
    assert "estimated" in page and "internal compiler estimates" in page and "Every op on the NPU" in page
    assert layers[0].name in page and "MAC utilisation" in page and "latency" not in page
    assert "qat" not in page and f"{int8.stem}.compiled.tflite" in page
    (float_entry,) = [one for one in entries if one["value"] is None]
    assert "Not supported: a float file" in estimate_block(float_entry)
    lines = estimate_lines({"profiles": entries}, width=100)
    assert lines and all(len(line) <= 100 for line in lines)
    text = " ".join(lines)
    assert "ethos-u65-256 estimate (not a latency)" in text and "every op on the NPU" in text and "vela 5.2.0" in text
    assert f"total cycles {entry['value'] / 1e3:.3g} k" in text or f"total cycles {entry['value'] / 1e6:.3g} M" in text


def test_the_profile_stage_names_layers_and_keeps_the_compiled_file_in_the_build(models, tiny_recipe, tmp_path):
    from edgekit.runner import BuildContext
    from edgekit.stages import profile_stage

    recipe = tiny_recipe(export={"formats": ["tflite"]},
                         profile={"devices": [str(REPO / "devices/ethos-u85-256.yaml")], "threads": [1]})
    for source, relative in ((models.float_tflite, "float/model.tflite"), (models.int8_tflite, "int8/ptq.tflite")):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, tmp_path / relative)
    context = BuildContext(recipe, tmp_path, {"float_tflite": "float/model.tflite", "ptq_tflite": "int8/ptq.tflite"})
    entries = profile_stage(context).report["profiles"]
    (entry,) = [one for one in entries if one["artifact"] == "int8/ptq.tflite"]
    assert entry["float_artifact"] == "float/model.tflite" and entry["obtained"] == "estimated"
    assert entry["estimate"]["files"] == {"compiled": "profile/ethos-u85-256/ptq.compiled.tflite"}
    assert (tmp_path / entry["estimate"]["files"]["compiled"]).is_file()
    named = [row["layer"] for row in entry["estimate"]["per_layer"] if row["layer"]]
    assert named[0] == "features.stem.conv" and named[-1] == "classifier" and len(named) == 28
