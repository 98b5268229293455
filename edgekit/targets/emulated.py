"""An ARM CPU with no board: aarch64 Python and runtimes under qemu-user, measured in guest instructions.

Every command runs as ``qemu-aarch64 -cpu <qemu_cpu> -L <sysroot view> -plugin <insn.so>,out=FILE ...``
with the sysroot's Python (``edgekit devices setup`` builds it). When the command is the on-device
script, ``--markers`` is added: the plugin then counts the guest instructions of each timed inference
and the script reports their median less that of as many empty iterations of the same loop (the harness:
timer, list append, marker calls) as ``instructions_per_inference``. Emulated wall time says nothing
about a real core (float ran ~800x, int8 ~70-100x slower than native), so no latency is ever reported;
instruction counts are comparable only between runs on the same ``qemu_cpu``.
"""

from __future__ import annotations

import shutil
import statistics
from pathlib import Path
from typing import Literal

from pydantic import Field

from edgekit.targets.base import Capabilities, CommandResult, TargetSettings
from edgekit.targets.local import CPU_RUNTIMES, LocalTarget, run_process
from edgekit.targets.qemu_symbols import kernel_table
from edgekit.targets.sysroot import SETUP_HINT, sysroot_paths, sysroot_ready

QEMU = "qemu-aarch64"  # the dynamic build (Debian's qemu-user): the static one cannot load plugins
PYTHON_NAMES = {"python", "python3", "python3.11"}
ONDEVICE_SCRIPT = "ondevice.py"
INSN_FILE_ENV = "EDGEKIT_INSN_FILE"  # also in ondevice.py
GUEST_PATH = ("usr/local/bin", "usr/bin", "usr/sbin")
#: qemu-user runs each guest thread as a host thread; thousands of them crash it
MAX_GUEST_THREADS = 64


class EmulatedArm64Settings(TargetSettings):
    qemu_cpu: Literal["cortex-a72", "cortex-a76", "neoverse-n1"] = Field(..., description="CPU model qemu emulates (`-cpu`); never `max` (see docs/devices.md).")
    sysroot: str = Field("~/.cache/edgekit/sysroot-arm64", description="aarch64 sysroot with Python and the runtimes (made by `edgekit devices setup`).")


class EmulatedArm64Target(LocalTarget):
    """Runs in a temporary directory on this machine, every command under qemu-aarch64."""

    kind = "emulated-arm64"
    settings_model = EmulatedArm64Settings
    capabilities = Capabilities(runtimes=CPU_RUNTIMES, measures="emulated", arches=("aarch64",),
                                max_threads=MAX_GUEST_THREADS)

    def __init__(self, profile):
        super().__init__(profile)
        settings = profile.emulated_arm64
        self.qemu_cpu = settings.qemu_cpu
        self.paths = sysroot_paths(settings.sysroot, settings.qemu_cpu)
        #: the interpreter to name as argv[0]; "python3" works too
        self.python = str(self.paths.python)
        #: guest instructions of each timed inference of the last profiling run, less the harness (empty if none)
        self.last_instruction_counts: list[int] = []
        #: median guest instructions of the last profiling run's empty iterations (None if none)
        self.last_harness_instructions: int | None = None
        #: the last profiling run's instructions per inference by function (qemu_symbols.kernel_table), or None
        self.last_kernels: dict | None = None
        self._runs = 0

    def available(self) -> tuple[bool, str]:
        if not shutil.which(QEMU):
            return False, f"{QEMU} is not installed; {SETUP_HINT}"
        return sysroot_ready(self.paths)

    def run(self, argv: list[str], *, timeout: float) -> CommandResult:
        self._runs += 1
        counts_file = self.workdir / f"instructions-{self._runs}.txt"
        counts_file.unlink(missing_ok=True)
        blocks_file = self.workdir / f"blocks-{self._runs}.txt" if _runs_ondevice_script(argv[1:]) else None
        result = run_process(self.qemu_argv(argv, counts_file, blocks_file), timeout=timeout, device=self.name,
                             cwd=self.workdir, what=f"{QEMU} ({Path(argv[0]).name})")
        self.last_instruction_counts, self.last_harness_instructions = _net_of_harness(_read_counts(counts_file))
        self.last_kernels = None
        if blocks_file is not None:
            self.last_kernels = kernel_table(blocks_file, len(self.last_instruction_counts))
            blocks_file.unlink(missing_ok=True)
        return result

    def qemu_argv(self, argv: list[str], counts_file: Path, blocks_file: Path | None = None) -> list[str]:
        """The full command line: qemu, its options and the plugin, then ``argv`` as the guest sees it.
        ``blocks_file``: the plugin also counts per translated block there (instructions per kernel)."""
        program, *args = argv
        program = self.guest_program(program)
        if _runs_ondevice_script(args) and "--markers" not in args:
            args = [*args, "--markers"]
        # Several runtime threads are several qemu threads: count atomically then (slower, still exact).
        atomic = "on" if _threads(args) > 1 else "off"
        return [
            QEMU, "-cpu", self.qemu_cpu, "-L", str(self.paths.view),
            "-E", f"PYTHONPATH={self.paths.site}", "-E", f"{INSN_FILE_ENV}={counts_file}",
            "-plugin", f"{self.paths.plugin},out={counts_file},atomic={atomic}"
            + (f",symbols={blocks_file}" if blocks_file is not None else ""),
            program, *args,
        ]

    def guest_program(self, program: str) -> str:
        """A bare name is looked up in the sysroot like PATH on a board; ``python3`` is its Python 3.11."""
        if program in PYTHON_NAMES:
            return str(self.paths.python)
        if "/" not in program:
            for folder in GUEST_PATH:
                candidate = self.paths.view / folder / program
                if candidate.exists():
                    return str(candidate)
        return program

    def instruction_spread(self) -> dict | None:
        """Median, min, max and relative spread ((max - min) / median) of the last run's counts."""
        counts = self.last_instruction_counts
        if not counts:
            return None
        median = statistics.median(counts)
        return {"median": int(median), "min": min(counts), "max": max(counts), "runs": len(counts),
                "spread": (max(counts) - min(counts)) / median if median else 0.0}

    def describe(self) -> dict:
        return {**super().describe(), "qemu_cpu": self.qemu_cpu, "machine": "aarch64",
                "measures": "guest instructions per inference (qemu TCG plugin); no latency",
                "sysroot": str(self.paths.root)}


def _runs_ondevice_script(args: list[str]) -> bool:
    return bool(args) and Path(args[0]).name == ONDEVICE_SCRIPT


def _threads(args: list[str]) -> int:
    for flag, value in zip(args, [*args[1:], ""]):
        if flag.startswith("--threads="):
            flag, value = "--threads", flag.split("=", 1)[1]
        if flag == "--threads" and value.isdigit():
            return int(value)
    return 1


def _net_of_harness(counts: list[int]) -> tuple[list[int], int | None]:
    """The script's counts are its timed inferences, then as many empty iterations: each inference's count
    less the empty iterations' median, and that median."""
    runs = len(counts) // 2
    if not runs:
        return [], None
    harness = int(statistics.median(counts[runs:]))
    return [count - harness for count in counts[:runs]], harness


def _read_counts(path: Path) -> list[int]:
    try:
        return [int(line) for line in path.read_text().split()]
    except (OSError, ValueError):
        return []
