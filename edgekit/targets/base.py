"""The one interface every target implements: put files, run a command, get files, clean up.

A target is where the on-device profiling script runs: this machine, a board over ssh, an Android
phone over adb, an emulated ARM core (qemu-user), or Qualcomm's HTP simulator. Arguments are always
lists (never a shell string built from user input); every call has a timeout.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import EdgekitError, UserInputError


class TargetError(EdgekitError):
    """A target failed at run time: unreachable, timed out, or the command crashed. Exit code 1."""


class TargetUnavailable(TargetError):
    """The target's tools or SDK are missing here (reads differently from a misconfiguration)."""


class DeviceProfileError(UserInputError):
    """A device profile YAML is invalid. Exit code 2."""


@dataclass
class CommandResult:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


class Target(ABC):
    """Context manager: ``with target: target.put(...); target.run([...]); target.get(...)``."""

    #: short kind name used in device profiles (``kind: ssh``)
    kind: str = ""
    #: True when timings from this target are not wall-clock latencies of real hardware
    emulated: bool = False
    simulated: bool = False

    def available(self) -> tuple[bool, str]:
        """(True, "") when this target can be used here, else (False, why)."""
        return True, ""

    @abstractmethod
    def put(self, local: Path, remote_name: str) -> str:
        """Copy ``local`` into the target's work directory; return its path on the target."""

    @abstractmethod
    def run(self, argv: list[str], *, timeout: float) -> CommandResult:
        """Run ``argv`` in the target's work directory; raise TargetError on timeout."""

    @abstractmethod
    def get(self, remote_name: str, local: Path) -> Path:
        """Copy a file from the target's work directory to ``local``."""

    @abstractmethod
    def cleanup(self) -> None:
        """Remove the target's work directory (called on exit, also after errors)."""

    def describe(self) -> dict:
        """Facts for the report: kind, host/device name, emulated/simulated."""
        return {"kind": self.kind, "emulated": self.emulated, "simulated": self.simulated}

    def __enter__(self) -> "Target":
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()
