"""Instructions per kernel: the plugin's per-block counts resolved to functions (edgekit/targets/qemu_symbols.py),
and, under qemu, that they add up to the per-inference count and that the emulated cores advertise what the real
ones have.

The ELF tests compile a tiny shared library with the host's gcc (skipped without it). The runs under qemu need
the emulated-arm64 set-up (docs/emulation.md) and skip, saying so, without it.
"""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from edgekit.report.schema import report_schema, validate_against
from edgekit.targets import sysroot
from edgekit.targets.emulated import EmulatedArm64Target
from edgekit.targets.qemu_symbols import (ElfFunctions, kernel_table, mac_kind, read_block_counts)
from targets.conftest_models import serve_or_skip
from targets.test_emulated import RUNS, SCRIPT, profile

LIBRARY_SOURCE = """
int first(int x) { return x * 3 + 1; }
int second(int x) { int s = 0; for (int i = 0; i < x; i++) s += i * x; return s; }
"""


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    gcc = shutil.which("gcc")
    if not gcc:
        pytest.skip("gcc is not installed (needed to build a test ELF library)")
    folder = tmp_path_factory.mktemp("elf")
    source = folder / "lib.c"
    source.write_text(LIBRARY_SOURCE)
    built = folder / "libtest.so"
    subprocess.run([gcc, "-O1", "-shared", "-fPIC", "-o", str(built), str(source)], check=True)
    stripped = folder / "libstripped.so"
    subprocess.run(["strip", "--strip-all", "-o", str(stripped), str(built)], check=True)
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(built)], capture_output=True, text=True).stdout
    starts = {line.split()[2]: int(line.split()[0], 16) for line in symbols.splitlines() if line.split()[1] == "T"}
    return built, stripped, starts


def test_functions_are_named_from_the_symbol_table(library):
    built, _, starts = library
    elf = ElfFunctions(str(built))
    assert elf.function(starts["second"] + 4) == (starts["second"], "second")
    assert elf.function(starts["first"]) == (starts["first"], "first")


def test_a_stripped_library_still_knows_where_functions_start(library):
    _, stripped, starts = library
    elf = ElfFunctions(str(stripped))
    start, name = elf.function(starts["second"] + 4)
    assert start == starts["second"] and name in (None, "second")  # .dynsym keeps exported names


# A64 encodings (from llvm-mc) of the multiply-accumulate instructions a kernel is told apart by
@pytest.mark.parametrize("word, kind", [
    (0x4E829420, "dot"), (0x6FA5E083, "dot"), (0x4E82A420, "mmla"), (0x4E22CC20, "fmla"), (0x4FA21820, "fmla"),
    (0x0E228020, "int_mla"), (0x4F522020, "int_mla"), (0x4E606820, "int_mla"), (0x4E229420, "int_mla"),
    (0x0E22C020, "int_mull"), (0x4EA28420, None), (0x3DC00020, None), (0x0F08A420, None), (0x6E22DC20, None),
])
def test_multiply_accumulate_kinds(word, kind):
    assert mac_kind(word) == kind


def test_block_file_sums_per_interval_and_subtracts_the_harness(tmp_path):
    lines = ["interval 1", "1000 4 400 -", "2000 2 20 main", "interval 2", "1000 4 400 -", "2000 2 20 main",
             "map 1000 3000 0 /nonexistent/libx.so",
             "interval 3", "2000 2 6 main", "interval 4", "2000 2 6 main"]
    blocks = tmp_path / "blocks.txt"
    blocks.write_text("\n".join(lines) + "\n")
    counts = read_block_counts(blocks)
    assert [sum(interval.values()) for interval in counts.intervals] == [420, 420, 6, 6]
    table = kernel_table(blocks, runs=2)
    assert table["total"] == 414  # 420 per inference less the 6 of the empty loop
    assert sum(row["instructions"] for row in table["kernels"]) == table["total"]
    assert kernel_table(blocks, runs=0) is None and kernel_table(tmp_path / "missing.txt", runs=1) is None
    schema = report_schema()
    validate_against({"$ref": "#/$defs/kernels", "$defs": schema["$defs"]}, table, "kernels")


# ---- under qemu ----

@pytest.fixture(scope="module")
def a76():
    yield from serve_or_skip(EmulatedArm64Target(profile()), "emulated-arm64")


def _profile(target, model: Path, *extra) -> dict:
    result = target.run(["python3", target.put(SCRIPT, "ondevice.py"), target.put(model, model.name), *RUNS, *extra],
                        timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["int8_tflite", "int8_onnx"])
def test_kernels_add_up_to_the_count_per_inference(a76, models, name):
    result = _profile(a76, getattr(models, name))
    kernels = a76.last_kernels
    assert kernels["runs"] == 3 and kernels["total"] == sum(row["instructions"] for row in kernels["kernels"])
    assert kernels["total"] == pytest.approx(result["instructions_per_inference"], rel=0.01)
    # the Cortex-A76's int8 GEMM kernels use SDOT/UDOT (its depthwise kernels widen and multiply instead)
    assert any(row["macs"].get("dot") for row in kernels["kernels"])
    if name == "int8_tflite":
        top = kernels["kernels"][0]
        assert top["symbol"].startswith("xnn_qs8") and top["library"] == "libpywrap_litert_common.so"
        _profile(a76, getattr(models, name))
        # deterministic: XNNPACK's functions cost the same every run (only Python's own, around them, vary)
        assert _xnnpack_rows(a76.last_kernels) == _xnnpack_rows(kernels) and len(_xnnpack_rows(kernels)) >= 3


def _xnnpack_rows(kernels: dict) -> list[dict]:
    return [row for row in kernels["kernels"] if row["symbol"].startswith("xnn_")]


HWCAP_SCRIPT = """
import ctypes, json
libc = ctypes.CDLL(None)
libc.getauxval.restype = ctypes.c_ulong
print(json.dumps([libc.getauxval(16), libc.getauxval(26)]))
"""
#: Linux arm64 AT_HWCAP bits 0..31 and the AT_HWCAP2 bits that matter to int8 and float kernels
HWCAP = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop "
         "sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs sb paca pacg").split()
HWCAP2 = {1: "sve2", 13: "i8mm", 14: "bf16", 23: "sme"}
#: bits the kernel sets, not the core: the event stream (a timer) and SSBS (speculation), irrelevant to kernels
NOT_FROM_THE_CORE = {"evtstrm", "ssbs"}


@pytest.mark.slow
@pytest.mark.parametrize("qemu_cpu", ["cortex-a72", "cortex-a76", "neoverse-n1"])
def test_the_emulated_core_advertises_the_real_cores_features(qemu_cpu, tmp_path):
    target = EmulatedArm64Target(profile(qemu_cpu))
    for ready in serve_or_skip(target, f"emulated-arm64 ({qemu_cpu})"):
        script = tmp_path / "hwcap.py"
        script.write_text(HWCAP_SCRIPT)
        result = ready.run(["python3", str(script)], timeout=300)
        hwcap, hwcap2 = json.loads(result.stdout.strip().splitlines()[-1])
        advertised = {name for bit, name in enumerate(HWCAP) if hwcap >> bit & 1}
        advertised |= {name for bit, name in HWCAP2.items() if hwcap2 >> bit & 1}
        real = set(sysroot.CPU_MODELS[qemu_cpu].features.split())  # the real core's /proc/cpuinfo Features
        assert advertised == real - NOT_FROM_THE_CORE
        assert ("asimddp" in advertised) == (qemu_cpu != "cortex-a72") and "i8mm" not in advertised
