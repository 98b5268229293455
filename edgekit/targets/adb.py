"""An Android phone over adb, measured with TFLite's own ``benchmark_model`` binary.

A phone has no Python, so when the orchestration runs the on-device script (``python ondevice.py MODEL
--threads N ...``) this target runs ``benchmark_model`` instead, with the same protocol, and prints the
script's JSON built from benchmark_model's output. Every adb call is a list argv with a timeout.

Untested on a phone here: the parser is tested on hand-written outputs in benchmark_model's documented
format (tests/targets/fixtures/). Limits of benchmark_model: random inputs (no accuracy), no maximum run
count (``--max-runs`` is ignored), no p90/p99; p50 is its ``median`` where it prints one, else the mean
(then ``latency_statistic`` says "mean"). Its peak memory footprint is reported where it prints one, else
its memory-footprint delta (then ``memory_statistic`` says "footprint delta": no peak RSS).

Each session works in a fresh directory made with ``mktemp -d`` under ``adb.device_dir`` and removes only
that directory at the end.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Optional

from pydantic import Field, field_validator

from edgekit.targets.base import Capabilities, CommandResult, Target, TargetError, TargetSettings, TargetUnavailable
from edgekit.targets.local import run_process

ADB_TIMEOUT = 120.0
BENCHMARK_NAME = "benchmark_model"
#: profile delegate -> (benchmark_model flags, name reported as "delegate")
DELEGATE_FLAGS = {
    "xnnpack": (["--use_xnnpack=true"], "XNNPACK"),
    "none": (["--use_xnnpack=false"], "none"),
    "gpu": (["--use_gpu=true"], "GPU"),
    "nnapi": (["--use_nnapi=true"], "NNAPI"),
    "hexagon": (["--use_hexagon=true"], "Hexagon"),
}
INSTALL_ADB = "install Android platform-tools (`sudo apt-get install adb`) and put adb on PATH"
#: phones have at most a dozen cores; more threads than this is a typo
MAX_PHONE_THREADS = 64
RUN_DIR_PREFIX = "run."


class AdbSettings(TargetSettings):
    serial: Optional[str] = Field(None, description="Device serial (`adb -s`); default: the only attached device.")
    benchmark_model: str = Field(..., min_length=1, description="Path on this machine of TFLite's Android `benchmark_model` binary.")
    device_dir: str = Field("/data/local/tmp/edgekit", min_length=1, description="Directory on the phone in which each session makes (and then removes) its own work directory.")

    @field_validator("device_dir")
    @classmethod
    def _absolute(cls, device_dir: str) -> str:
        if not device_dir.startswith("/") or PurePosixPath(device_dir) == PurePosixPath("/"):
            raise ValueError("must be an absolute directory on the phone other than /")
        return device_dir


@dataclass
class BenchmarkOutput:
    """What benchmark_model printed, in its own units converted to ms/MB."""

    init_ms: float | None = None
    first_inference_ms: float | None = None
    warmup_avg_ms: float | None = None
    inference_avg_ms: float | None = None
    runs: dict | None = None  # count, first, curr, min, max, avg, std (+ median, p5, p95) of the timed runs, in ms
    memory_init_mb: float | None = None
    memory_overall_mb: float | None = None
    peak_memory_mb: float | None = None
    per_node: list[dict] = field(default_factory=list)  # name, op_type, ms (avg), in run order
    top_nodes: list[dict] = field(default_factory=list)  # "Top by Computation Time"
    by_op_type: list[dict] = field(default_factory=list)  # op_type, count, ms, percent


def parse_benchmark_output(text: str) -> BenchmarkOutput:
    """Parse benchmark_model's stdout (with or without ``INFO:`` / logcat prefixes)."""
    lines = [_strip_prefix(line) for line in text.splitlines()]
    out = BenchmarkOutput()
    timing = re.search(r"Inference timings in us: Init: ([\d.]+), First inference: ([\d.]+), "
                       r"Warmup \(avg\): ([\d.]+), Inference \(avg\): ([\d.]+)", "\n".join(lines))
    if not timing:
        raise TargetError("benchmark_model printed no 'Inference timings in us' line: "
                          + (next((line for line in reversed(lines) if line.strip()), "no output"))[:300])
    out.init_ms, out.first_inference_ms, out.warmup_avg_ms, out.inference_avg_ms = (float(v) / 1000 for v in timing.groups())
    out.runs = _timed_run_stats(lines)
    for line in lines:
        if match := re.search(r"Memory footprint delta .*\(MB\): init=([\d.]+) overall=([\d.]+)", line):
            out.memory_init_mb, out.memory_overall_mb = float(match[1]), float(match[2])
        elif match := re.search(r"[Pp]eak memory footprint \(MB\)[^:]*: (?:init=[\d.]+ overall=)?([\d.]+)", line):
            out.peak_memory_mb = float(match[1])
    regular = _after(lines, "Operator-wise Profiling Info for Regular Benchmark Runs")
    out.per_node = _node_rows(_section(regular, "Run Order"))
    out.top_nodes = _node_rows(_section(regular, "Top by Computation Time"))
    out.by_op_type = _type_rows(_section(regular, "Summary by node type"))
    return out


def _strip_prefix(line: str) -> str:
    # logcat: "07-14 13:14:56.521 22838 22838 I tflite  : ..."; newer builds: "INFO: ..."
    line = re.sub(r"^\d\d-\d\d [\d:.]+\s+\d+\s+\d+ \w tflite\s*: ", "", line)
    return re.sub(r"^(INFO|VERBOSE|WARNING): ", "", line)


def _timed_run_stats(lines: list[str]) -> dict | None:
    """The ``count=...`` line after the second "Running benchmark for at least" (the first is the warm-up)."""
    starts = [i for i, line in enumerate(lines) if line.startswith("Running benchmark for at least")]
    for line in lines[starts[-1]:] if starts else []:
        if line.startswith("count="):
            stats = dict(re.findall(r"(\w+)=([\d.]+)", line))
            return {key: float(value) / (1 if key == "count" else 1000) for key, value in stats.items()}
    return None


def _after(lines: list[str], heading: str) -> list[str]:
    for index, line in enumerate(lines):
        if heading in line:
            return lines[index + 1:]
    return []


def _section(lines: list[str], title: str) -> list[list[str]]:
    """Tab-separated rows of the ``===== title =====`` table, header row dropped."""
    rows, inside = [], False
    for line in lines:
        if line.startswith("====="):
            if inside:
                break
            inside = title in line
            continue
        cells = [cell.strip() for cell in line.split("\t") if cell.strip()]
        if inside and cells and not cells[0].startswith("["):
            rows.append(cells)
        elif inside and not cells and rows:
            break
    return rows


def _node_rows(rows: list[list[str]]) -> list[dict]:
    # [node type] [start] [first] [avg ms] [%] [cdf%] [mem KB] [times called] [Name]  (older builds: no [start])
    parsed = []
    for cells in rows:
        avg_index = 3 if len(cells) >= 9 else 2
        name = re.sub(r"^\[(.*)\]:\d+$", r"\1", cells[-1])  # "[name]:index" -> "name"
        parsed.append({"name": name, "op_type": cells[0], "ms": float(cells[avg_index])})
    return parsed


def _type_rows(rows: list[list[str]]) -> list[dict]:
    # [Node type] [count] [avg ms] [avg %] [cdf %] [mem KB] [times called]
    return [{"op_type": cells[0], "count": int(cells[1]), "ms": float(cells[2]), "percent": float(cells[3].rstrip("%"))}
            for cells in rows]


def benchmark_argv(binary: str, model: str, *, threads: int, delegate: str, warmup: int, min_runs: int,
                   min_seconds: float, op_profiling: bool = True) -> list[str]:
    """benchmark_model's command line for one measurement (paths on the phone)."""
    if delegate not in DELEGATE_FLAGS:
        raise TargetError(f"adb: unknown delegate '{delegate}' (one of: {', '.join(DELEGATE_FLAGS)})")
    delegate_flags = list(DELEGATE_FLAGS[delegate][0])
    if delegate == "hexagon":  # the libhexagon_nn_skel*.so files are expected next to the binary
        delegate_flags.append(f"--hexagon_lib_path={PurePosixPath(binary).parent}")
    argv = [binary, f"--graph={model}", f"--num_threads={threads}", *delegate_flags,
            f"--warmup_runs={warmup}", f"--num_runs={min_runs}", f"--min_secs={min_seconds:g}"]
    return argv + (["--enable_op_profiling=true"] if op_profiling else [])


def ondevice_json(parsed: BenchmarkOutput, *, model: str, delegate: str, threads: int, host: dict) -> dict:
    """The on-device script's JSON, filled from benchmark_model's output."""
    runs = parsed.runs or {}
    median = runs.get("median")
    latency = {"p50": median if median is not None else runs.get("avg", parsed.inference_avg_ms), "p90": None,
               "p99": None, "mean": runs.get("avg", parsed.inference_avg_ms), "std": runs.get("std"), "min": runs.get("min")}
    count = int(runs.get("count", 0))
    has_peak = parsed.peak_memory_mb is not None
    return {
        "model": PurePosixPath(model).name, "runtime": "litert", "runtime_version": "benchmark_model",
        "delegate": DELEGATE_FLAGS[delegate][1], "threads": threads, "latency_ms": latency, "runs": count,
        "seconds": count * (latency["mean"] or 0.0) / 1000.0, "init_ms": parsed.init_ms,
        "first_inference_ms": parsed.first_inference_ms,
        "peak_rss_mb": parsed.peak_memory_mb if has_peak else parsed.memory_overall_mb,
        "host": host, "accuracy": None, "outputs_file": None, "per_node": parsed.per_node or None,
        "instructions_per_inference": None,
        "latency_statistic": "median" if median is not None else "mean",
        "memory_statistic": "peak footprint" if has_peak else "footprint delta",
        **({} if median is not None else {"latency_note": "benchmark_model printed no median: p50 is the mean"}),
    }


class AdbTarget(Target):
    kind = "adb"
    settings_model = AdbSettings
    capabilities = Capabilities(runtimes={"litert": tuple(DELEGATE_FLAGS)}, max_threads=MAX_PHONE_THREADS)
    runs_python = False

    def __init__(self, profile):
        settings = profile.adb
        self.profile, self.name = profile, profile.name
        self.serial = settings.serial
        self.benchmark_model = Path(settings.benchmark_model).expanduser()
        self.device_dir = PurePosixPath(settings.device_dir)
        self.python = "python3"  # never run: ondevice.py commands become benchmark_model runs
        #: this session's own directory under device_dir (made on first use, the only one cleanup removes)
        self.run_dir: PurePosixPath | None = None

    def adb_argv(self, *args: str) -> list[str]:
        return ["adb", *(["-s", self.serial] if self.serial else []), *args]

    def available(self) -> tuple[bool, str]:
        if not shutil.which("adb"):
            return False, f"adb not found; {INSTALL_ADB}"
        if not self.benchmark_model.is_file():
            return False, f"benchmark_model not found at {self.benchmark_model} (build it for android_arm64, see docs)"
        listed = run_process(["adb", "devices"], timeout=ADB_TIMEOUT, device=self.name).stdout
        attached = [line.split()[0] for line in listed.splitlines()[1:] if line.strip().endswith("\tdevice")]
        if self.serial and self.serial not in attached:
            return False, f"no device with serial {self.serial} attached (adb devices: {', '.join(attached) or 'none'})"
        if not self.serial and len(attached) != 1:
            return False, f"{len(attached)} devices attached; set adb.serial" if attached else "no device attached (adb devices)"
        return True, ""

    def put(self, local: Path, remote_name: str) -> str:
        remote = str(self._prepare() / remote_name)
        self._adb("push", str(local), remote)
        return remote

    def run(self, argv: list[str], *, timeout: float) -> CommandResult:
        args = argv[1:]
        if args and Path(args[0]).name == "ondevice.py":
            return self._benchmark(args[1:], timeout)
        return self._adb("shell", " ".join(shlex.quote(arg) for arg in argv), timeout=timeout, check=False)

    def get(self, remote_name: str, local: Path) -> Path:
        self._adb("pull", str(self._prepare() / remote_name), str(local))
        return Path(local)

    def cleanup(self) -> None:
        """Remove this session's directory (never ``device_dir`` itself); best effort."""
        if self.run_dir is None:
            return
        run_dir, self.run_dir = self.run_dir, None
        try:
            self._adb("shell", f"rm -rf -- {shlex.quote(str(run_dir))}", check=False)
        except TargetError:
            pass

    def describe(self) -> dict:
        return {**super().describe(), "name": self.name, "serial": self.serial, "tool": "benchmark_model"}

    def _prepare(self) -> PurePosixPath:
        """This session's work directory on the phone, with benchmark_model in it (made on first use)."""
        if self.run_dir is not None:
            return self.run_dir
        ok, why = self.available()
        if not ok:
            raise TargetUnavailable(f"{self.name}: {why}")
        self.run_dir = self._make_run_dir()
        binary = str(self.run_dir / BENCHMARK_NAME)
        self._adb("push", str(self.benchmark_model), binary)
        self._adb("shell", f"chmod +x {shlex.quote(binary)}")
        return self.run_dir

    def _make_run_dir(self) -> PurePosixPath:
        parent = shlex.quote(str(self.device_dir))
        template = shlex.quote(f"{self.device_dir}/{RUN_DIR_PREFIX}XXXXXXXX")
        made = self._adb("shell", f"mkdir -p {parent} && mktemp -d {template}").stdout.strip()
        run_dir = PurePosixPath(made)
        if run_dir.parent != self.device_dir or not run_dir.name.startswith(RUN_DIR_PREFIX):
            raise TargetError(f"{self.name}: mktemp -d under {self.device_dir} on the phone gave '{made[:200]}'")
        return run_dir

    def _benchmark(self, args: list[str], timeout: float) -> CommandResult:
        model, options = args[0], _script_options(args[1:])
        argv = benchmark_argv(str(self._prepare() / BENCHMARK_NAME), model, threads=options["threads"],
                              delegate=options["delegate"], warmup=options["warmup"], min_runs=options["min_runs"],
                              min_seconds=options["min_seconds"])
        result = self._adb("shell", " ".join(shlex.quote(arg) for arg in argv), timeout=timeout, check=False)
        if result.returncode != 0 or "Inference timings in us" not in result.stdout:
            return CommandResult(1, result.stdout, f"benchmark_model failed: {_last(result.stdout + result.stderr)}\n",
                                 result.seconds)
        parsed = parse_benchmark_output(result.stdout)
        output = ondevice_json(parsed, model=model, delegate=options["delegate"], threads=options["threads"],
                               host=self._host())
        return CommandResult(0, result.stdout + "\n" + json.dumps(output) + "\n", result.stderr, result.seconds)

    def _host(self) -> dict:
        probe = ("uname -m; getprop ro.soc.model; getprop ro.product.model; nproc; "
                 "cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor 2>/dev/null")
        lines = self._adb("shell", probe, check=False).stdout.splitlines() + [""] * 5
        machine, soc, model, cores, governor = (line.strip() or None for line in lines[:5])
        return {"machine": machine, "cpu": soc or model, "cores": int(cores) if cores and cores.isdigit() else None,
                "governor": governor}

    def _adb(self, *args: str, timeout: float = ADB_TIMEOUT, check: bool = True) -> CommandResult:
        result = run_process(self.adb_argv(*args), timeout=timeout, device=self.name, what=f"adb {args[0]}")
        if check and result.returncode != 0:
            raise TargetError(f"{self.name}: adb {args[0]} failed: {_last(result.stderr + result.stdout)}")
        return result


def _script_options(args: list[str]) -> dict:
    """The on-device script's protocol options that benchmark_model understands."""
    options = {"threads": 1, "delegate": "xnnpack", "warmup": 1, "min_runs": 50, "min_seconds": 1.0}
    names = {"--threads": ("threads", int), "--delegate": ("delegate", str), "--warmup": ("warmup", int),
             "--min-runs": ("min_runs", int), "--min-seconds": ("min_seconds", float)}
    for flag, value in zip(args, args[1:]):
        if flag in names:
            key, kind = names[flag]
            options[key] = kind(value)
    if options["delegate"] == "auto":
        options["delegate"] = "xnnpack"
    return options


def _last(text: str) -> str:
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "no output")[:300]
