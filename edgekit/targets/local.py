"""This machine as a target: a temporary work directory and subprocesses (list argv, a timeout each).

``run_process`` is also what the other targets use to call their client tools (ssh, scp, adb, qemu).
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgekit.targets.base import ARCHES, Capabilities, CommandResult, Target, TargetError

#: what a CPU target running edgekit's on-device script offers (this machine, an ssh board, qemu)
CPU_RUNTIMES = {"onnxruntime": ("cpu",), "litert": ("xnnpack", "none")}
#: runtimes this machine offers too, when their extras are installed (edgekit[openvino], edgekit[executorch]);
#: the sysroot of the emulated cores holds neither (docs/runtimes.md). openvino ``cpu``: float held at f32.
HOST_RUNTIMES = {**CPU_RUNTIMES, "openvino": ("cpu", "cpu-bf16"), "executorch": ("xnnpack",)}

#: seconds a timed-out process group gets between SIGTERM and SIGKILL
KILL_GRACE_SECONDS = 2.0


def run_process(argv: list[str], *, timeout: float, device: str, cwd: str | Path | None = None,
                what: str | None = None) -> CommandResult:
    """Run ``argv`` (never through a shell); on timeout kill its whole process group and raise TargetError."""
    what = what or Path(argv[0]).name
    started = time.perf_counter()
    try:
        # A new session, so that a timeout also ends the children (a runtime's worker threads are fine,
        # but a wrapper like qemu or ssh may fork) and communicate() cannot hang on their open pipes.
        process = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True)
    except OSError as exc:
        raise TargetError(f"{device}: cannot run {what}: {exc.strerror or exc}") from None
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        raise TargetError(f"{device}: {what} timed out after {timeout:g} s") from None
    except BaseException:
        _kill_group(process)
        raise
    return CommandResult(process.returncode, stdout, stderr, time.perf_counter() - started)


def last_line(text: str, limit: int = 300) -> str:
    """The last non-blank line of a tool's output: the one-line reason for a failure."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:limit] if lines else ""


def platform_arch() -> str:
    """This machine's architecture in device-profile words (x86_64, aarch64, armv7)."""
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64", "armv7l": "armv7"}.get(machine, machine)


def _kill_group(process: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_SECONDS), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.communicate(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


class LocalTarget(Target):
    """Runs in a fresh temporary directory on this machine; ``python`` is the interpreter running edgekit."""

    kind = "local"
    capabilities = Capabilities(runtimes=HOST_RUNTIMES, optional_runtimes=("openvino", "executorch"), arches=ARCHES,
                                max_threads=None)

    def __init__(self, profile=None):
        self.profile = profile
        self.name = profile.name if profile is not None else "host"
        self.python = sys.executable
        self._workdir: Path | None = None

    @property
    def workdir(self) -> Path:
        """The work directory, made on first use (so that a target only checked leaves nothing behind)."""
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="edgekit-local-"))
        return self._workdir

    def put(self, local: Path, remote_name: str) -> str:
        destination = self._path(remote_name)
        try:
            shutil.copyfile(local, destination)
        except OSError as exc:
            raise TargetError(f"{self.name}: cannot copy {local} to the work directory: {exc.strerror or exc}") from None
        return str(destination)

    def run(self, argv: list[str], *, timeout: float) -> CommandResult:
        return run_process(argv, timeout=timeout, device=self.name, cwd=self.workdir)

    def get(self, remote_name: str, local: Path) -> Path:
        source = self._path(remote_name)
        if not source.is_file():
            raise TargetError(f"{self.name}: {remote_name} is not in the work directory")
        shutil.copyfile(source, local)
        return Path(local)

    def cleanup(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def describe(self) -> dict:
        return {**super().describe(), "name": self.name, "host": platform.node(), "machine": platform.machine()}

    def _path(self, remote_name: str) -> Path:
        if Path(remote_name).name != remote_name or remote_name in ("", ".", ".."):
            raise TargetError(f"{self.name}: '{remote_name}' is not a plain file name")
        return self.workdir / remote_name
