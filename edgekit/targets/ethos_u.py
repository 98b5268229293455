"""Arm's Ethos-U NPUs (U55, U65, U85), estimated by their compiler, Vela, on this machine.

Nothing runs here on an NPU: Vela compiles each int8 .tflite for the profile's accelerator, system config
(clock, memory ports) and memory mode, both taken from the ``Arm/vela.ini`` that Vela ships, and its own
cost model estimates NPU and total cycles, the inference time at the configured clock and the SRAM and
flash or DRAM the network uses. Every figure is reported as ``obtained: estimated`` (never a latency), with
Vela's own caveat. The compiled file (one ``ethos-u`` custom op) is kept for a board with the Ethos-U
driver; LiteRT on this machine cannot run it.

The orchestration runs the on-device script (``python ondevice.py MODEL ...``) on every target; this one
runs Vela instead, as the adb target runs benchmark_model, and prints the script's JSON built from Vela's
summary CSV, its per-layer CSV (``--verbose-performance``) and its stdout. Strict mode (on by default)
makes an op that Vela leaves on the CPU an error that lists the ops. A float file is not compiled for
the NPU at all (it has no int8 kernels): it is reported as not supported, with that reason.
"""

from __future__ import annotations

import configparser
import csv
import importlib.util
import json
import platform
import re
import sys
from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, field_validator

from edgekit.targets.base import ARCHES, Capabilities, CommandResult, TargetError, TargetSettings
from edgekit.targets.local import LocalTarget, last_line, run_process

#: Vela 5.2.0's accelerators (``--accelerator-config``); tests/targets/test_ethos_u.py checks Vela agrees
ACCELERATORS = ("ethos-u55-32", "ethos-u55-64", "ethos-u55-128", "ethos-u55-256", "ethos-u65-256",
                "ethos-u65-512", "ethos-u85-128", "ethos-u85-256", "ethos-u85-512", "ethos-u85-1024",
                "ethos-u85-2048")
VELA_CONFIG = "Arm/vela.ini"  # the configuration file Vela ships (``vela --list-config-files``)
INSTALL_HINT = "install the extra: pip install -c requirements.lock 'edgekit[ethos-u]' (ethos-u-vela==5.2.0)"
ONDEVICE_SCRIPT = "ondevice.py"
#: the printed caveat, should a Vela version stop printing its own with --verbose-cycle-estimate
FALLBACK_CAVEAT = "Vela's figures are internal compiler estimates, not measurements on an NPU."


class EthosUCpuOps(TargetError):
    """Strict mode: Vela left some ops of an int8 file on the CPU (listed in the message and in ``ops``)."""

    def __init__(self, model: str, ops: list[dict], accelerator: str):
        self.ops = ops
        listed = ", ".join(_op_text(op) for op in ops[:8])
        more = f" and {len(ops) - 8} more" if len(ops) > 8 else ""
        super().__init__(f"{model}: Vela leaves {len(ops)} op{'s' if len(ops) != 1 else ''} on the CPU for "
                         f"{accelerator} in strict mode: {listed}{more}",
                         hint="change or remove these ops (see docs/ethos-u.md), or set ethos_u.strict: false")


def _op_text(op: dict) -> str:
    reason = f": {op['reason']}" if op.get("reason") else ""
    return f"{op['op']} ({op['tensor'][-60:]}){reason}"


def vela_ini() -> Optional[Path]:
    """Vela's shipped ``Arm/vela.ini``, found without importing Vela; None when Vela is not installed."""
    spec = importlib.util.find_spec("ethosu")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "config_files" / VELA_CONFIG
    return path if path.is_file() else None


def vela_config_names(section: str) -> Optional[list[str]]:
    """The names of ``section`` (``System_Config`` or ``Memory_Mode``) in Vela's vela.ini; None without Vela."""
    path = vela_ini()
    if path is None:
        return None
    parser = configparser.ConfigParser()
    parser.read(path, encoding="utf-8")
    prefix = f"{section}."
    return [name[len(prefix):] for name in parser.sections() if name.startswith(prefix)]


def _known_name(name: str, section: str, what: str) -> str:
    names = vela_config_names(section)
    if names is not None and name not in names:
        raise ValueError(f"Vela's {VELA_CONFIG} has no {what} '{name[:60]}' (valid: {', '.join(names)})")
    return name


class EthosUSettings(TargetSettings):
    accelerator: Literal[ACCELERATORS] = Field(..., description="Ethos-U accelerator and MAC count (`--accelerator-config`), e.g. `ethos-u55-128`.")
    system_config: str = Field(..., description=f"System config from Vela's `{VELA_CONFIG}` (core clock, SRAM and flash/DRAM ports), e.g. `Ethos_U55_High_End_Embedded`.")
    memory_mode: str = Field(..., description=f"Memory mode from Vela's `{VELA_CONFIG}` (where weights and the arena live), e.g. `Shared_Sram`.")
    optimise: Literal["Performance", "Size"] = Field("Performance", description="Vela's `--optimise` strategy.")
    strict: bool = Field(True, description="An op Vela leaves on the CPU is an error that lists the ops (float files are reported as not supported either way).")

    @field_validator("system_config")
    @classmethod
    def _system_config_in_vela_ini(cls, name: str) -> str:
        return _known_name(name, "System_Config", "system config")

    @field_validator("memory_mode")
    @classmethod
    def _memory_mode_in_vela_ini(cls, name: str) -> str:
        return _known_name(name, "Memory_Mode", "memory mode")


class EthosUTarget(LocalTarget):
    """Compiles with Vela in a temporary directory on this machine; reports Vela's estimates."""

    kind = "ethos-u"
    settings_model = EthosUSettings
    capabilities = Capabilities(runtimes={"litert": ("ethos-u",)}, measures="estimated", arches=ARCHES, max_threads=1)
    runs_python = False  # no on-device script runs: `edgekit devices check` only checks that Vela is here

    def __init__(self, profile):
        super().__init__(profile)
        self.settings: EthosUSettings = profile.ethos_u
        self._compiles = 0

    def available(self) -> tuple[bool, str]:
        if importlib.util.find_spec("ethosu") is None or vela_ini() is None:
            return False, f"Vela is not installed; {INSTALL_HINT}"
        return True, ""

    def run(self, argv: list[str], *, timeout: float) -> CommandResult:
        args = argv[1:]
        if args and Path(args[0]).name == ONDEVICE_SCRIPT:
            return self._estimate(Path(args[1]), timeout)
        return super().run(argv, timeout=timeout)

    def describe(self) -> dict:
        settings = self.settings
        return {**super().describe(), "accelerator": settings.accelerator, "system_config": settings.system_config,
                "memory_mode": settings.memory_mode, "strict": settings.strict,
                "measures": "Vela's compile-time estimates on this machine; no latency"}

    def _estimate(self, model: Path, timeout: float) -> CommandResult:
        """Vela's estimates for ``model`` as the on-device script's JSON (a float file: not supported)."""
        from edgekit.runtimes.int8_check import check_int8

        kernels = check_int8(model, "litert")
        if not kernels["int8"]:
            return self._result(self._not_supported(model, kernels), 0.0)
        self._compiles += 1
        out_dir = self.workdir / f"vela-{self._compiles}"
        result = run_process(vela_argv(model, self.settings, out_dir), timeout=timeout, device=self.name,
                             what=f"Vela on {model.name}")
        if result.returncode != 0:
            raise TargetError(f"{self.name}: Vela failed on {model.name}: "
                              f"{last_line(result.stderr) or last_line(result.stdout) or f'exit code {result.returncode}'}")
        estimate = read_vela_output(out_dir, model.stem, self.settings.system_config, result.stdout)
        if self.settings.strict and estimate["cpu_ops"]:
            raise EthosUCpuOps(model.name, estimate["cpu_ops"], self.settings.accelerator)
        estimate["files"] = self._compiled_file(out_dir, model)
        return self._result(estimate, result.seconds)

    def _compiled_file(self, out_dir: Path, model: Path) -> dict:
        """{"compiled": its name in the work directory} (where ``get`` can fetch it), or {} if Vela wrote none."""
        compiled = out_dir / f"{model.stem}_vela.tflite"
        if not compiled.is_file():
            return {}
        kept = compiled.replace(self.workdir / compiled.name)
        return {"compiled": kept.name}

    def _not_supported(self, model: Path, kernels: dict) -> dict:
        reason = (f"a float file: {kernels['float']} of {kernels['float']} convs/matmuls compute in float32, and "
                  f"the Ethos-U runs int8/int16 only (Vela would leave every op on the CPU)")
        return {"supported": False, "reason": reason, "headline": {"metric": "cycles", "unit": "cycles", "value": None},
                "estimates": [], "cpu_ops": [], "per_layer": [], "caveat": None, "files": {}}

    def _result(self, estimate: dict, seconds: float) -> CommandResult:
        # The compiled file runs in LiteRT (Micro) with the Ethos-U op on a board; these figures are Vela's.
        output = {"runtime": "litert", "runtime_version": f"vela {vela_version()}",
                  "delegate": f"{self.settings.accelerator} (Vela estimate)",
                  "threads": 1, "runs": 1 if estimate["supported"] else 0, "seconds": round(seconds, 3),
                  "host": {"machine": platform.machine()},  # where Vela ran; the NPU is in the profile
                  "accuracy": None, "per_node": None, "estimate": estimate,
                  **({} if estimate["supported"] else {"latency_note": f"not supported: {estimate['reason']}"})}
        return CommandResult(0, json.dumps(output) + "\n", "", seconds)


def vela_version() -> Optional[str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ethos-u-vela")
    except PackageNotFoundError:
        return None


def vela_argv(model: Path, settings: EthosUSettings, out_dir: Path) -> list[str]:
    """Vela's command line (an argument list, never a shell string)."""
    return [sys.executable, "-m", "ethosu.vela", str(model), "--accelerator-config", settings.accelerator,
            "--config", VELA_CONFIG, "--system-config", settings.system_config, "--memory-mode", settings.memory_mode,
            "--optimise", settings.optimise, "--output-dir", str(out_dir), "--verbose-performance",
            "--verbose-cycle-estimate"]


# ---- reading Vela's output --------------------------------------------------------------------------

def read_vela_output(out_dir: Path, name: str, system_config: str, stdout: str) -> dict:
    """Vela's estimates from ``<name>_summary_<system_config>.csv``, ``<name>_per-layer.csv`` and its stdout."""
    summary_path = out_dir / f"{name}_summary_{system_config}.csv"
    try:
        with summary_path.open(newline="") as file:
            summary = next(csv.DictReader(file))
    except (OSError, StopIteration) as exc:
        raise TargetError(f"Vela wrote no summary for {name} ({summary_path.name}: {exc})") from None
    rows = read_per_layer_csv(out_dir / f"{name}_per-layer.csv")
    reasons = cpu_reasons(stdout)
    cpu_ops = [{"op": row["op"], "tensor": row["tensor"], "reason": reasons.get(row["tensor"])}
               for row in rows if row["target"] == "CPU"]
    op_counts = vela_op_counts(stdout)
    return {"supported": True, "reason": None, "headline": {"metric": "cycles", "unit": "cycles",
                                                             "value": _int(summary, "cycles_total")},
            "estimates": summary_estimates(summary, op_counts, len(cpu_ops)), "cpu_ops": cpu_ops,
            "per_layer": rows, "caveat": vela_caveat(stdout),
            "config": {"accelerator": summary.get("accelerator_configuration"), "system_config": summary.get("system_config"),
                       "memory_mode": summary.get("memory_mode"), "core_clock_mhz": _float(summary, "core_clock", 1e-6),
                       "weights_in": summary.get("weights_storage_area"),
                       "feature_maps_in": summary.get("feature_map_storage_area")}}


def summary_estimates(summary: dict, op_counts: dict, cpu_op_rows: int) -> list[dict]:
    """The summary's figures as typed measurements, all ``obtained: estimated``."""
    from edgekit.report.schema import measurement

    figures = [
        ("npu_cycles", "cycles", _int(summary, "cycles_npu")),
        ("total_cycles", "cycles", _int(summary, "cycles_total")),
        ("estimated_inference_time", "ms", _float(summary, "inference_time", 1000.0)),
        ("sram_used", "KiB", _float(summary, "sram_memory_used")),
        ("dram_used", "KiB", _float(summary, "dram_memory_used")),
        ("on_chip_flash_used", "KiB", _float(summary, "on_chip_flash_memory_used")),
        ("off_chip_flash_used", "KiB", _float(summary, "off_chip_flash_memory_used")),
        ("macs", "MACs", _int(summary, "nn_macs")),
        ("npu_ops", "ops", op_counts.get("NPU")),
        ("cpu_ops", "ops", op_counts.get("CPU", cpu_op_rows)),
    ]
    return [measurement(metric, unit, value, None, "estimated") for metric, unit, value in figures]


def read_per_layer_csv(path: Path) -> list[dict]:
    """One row per op of the original .tflite (Vela splits some into several NNG ops: their figures are
    summed), in graph order: its op type, output tensor, where it runs, cycles and MAC utilisation."""
    try:
        with path.open(newline="") as file:
            raw = list(csv.DictReader(file))
    except OSError:
        return []
    rows: list[dict] = []
    for line in raw:
        op, name, target = line["Original Operator"], line["Name"], line["Target"]
        if rows and (rows[-1]["op"], rows[-1]["target"]) == (op, target) and _same_tensor(rows[-1]["tensor"], name):
            rows[-1]["tensor"] = min(rows[-1]["tensor"], name, key=len)  # the name without Vela's suffix
        else:
            rows.append({"op": op, "tensor": name, "target": target, "layer": None, "nng_ops": [],
                         "cycles": 0, "npu_cycles": 0, "macs": 0, "cycles_pct": 0.0, "mac_util_pct": None})
        _add_nng_op(rows[-1], line)
    return rows


def _same_tensor(name: str, other: str) -> bool:
    """Vela names the NNG ops it makes from one op by that op's output tensor, some with a suffix of its own
    (``;33_transpose`` next to ``;33``, ``;37_intermediate`` next to ``;37``)."""
    shorter, longer = sorted((name, other), key=len)
    return longer == shorter or longer.startswith(shorter + "_")


def _add_nng_op(row: dict, line: dict) -> None:
    row["nng_ops"].append(line["NNG Operator"])
    row["cycles"] += _int(line, "Op Cycles") or 0
    row["npu_cycles"] += _int(line, "NPU") or 0
    macs = _int(line, "MAC Count") or 0
    row["macs"] += macs
    row["cycles_pct"] = round(row["cycles_pct"] + (_float(line, "Network% (cycles)") or 0.0), 3)
    if macs and row["target"] == "NPU":  # the utilisation of the NNG op that does the MACs
        row["mac_util_pct"] = round(_float(line, "Util% (MAC)") or 0.0, 2)


_CPU_WARNING = re.compile(r"^Warning \(supported operators\) operator: (\w+), ofm: '(.*)'\s*\nReason: (.*)$", re.M)


def cpu_reasons(stdout: str) -> dict[str, str]:
    """Vela's reason for each op it leaves on the CPU, by output tensor name."""
    return {match[2]: match[3].strip()[:200] for match in _CPU_WARNING.finditer(stdout)}


def vela_op_counts(stdout: str) -> dict[str, int]:
    """``CPU operators = N`` and ``NPU operators = N`` as Vela prints them (its operators, after its rewrites)."""
    return {target: int(count) for target, count in re.findall(r"^(CPU|NPU) operators = (\d+)", stdout, re.M)}


def vela_caveat(stdout: str) -> str:
    """Vela's own words on what its figures are (printed with ``--verbose-cycle-estimate``)."""
    lines = stdout.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("Info:") and "estimate" in line:
            following = lines[index + 1].strip() if index + 1 < len(lines) else ""
            return " ".join(part for part in (line.removeprefix("Info:").strip(), following) if part)
    return FALLBACK_CAVEAT


def _int(row: dict, key: str) -> Optional[int]:
    value = _float(row, key)
    return None if value is None else int(round(value))


def _float(row: dict, key: str, scale: float = 1.0) -> Optional[float]:
    try:
        value = float(row.get(key))
    except (TypeError, ValueError):
        return None
    return None if value != value else round(value * scale, 6)  # NaN: Vela's "no figure"
