"""The one interface every target implements: put files, run a command, get files, clean up.

A target is where the on-device profiling script runs: this machine, a board over ssh, an Android
phone over adb, an emulated ARM core (qemu-user), or Qualcomm's HTP simulator. Arguments are always
lists (never a shell string built from user input); every call has a timeout.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal, Mapping, Optional

from pydantic import BaseModel, ConfigDict

from edgekit.errors import EdgekitError, UserInputError

Measures = Literal["real", "emulated", "simulated", "estimated"]
#: CPU architectures a device profile can name (``auto``: this machine's, for targets that run here)
ARCHES = ("auto", "x86_64", "aarch64", "armv7")


class TargetError(EdgekitError):
    """A target failed at run time: unreachable, timed out, or the command crashed. Exit code 1."""


class TargetUnavailable(TargetError):
    """The target's tools or SDK are missing here (reads differently from a misconfiguration)."""


class DeviceProfileError(UserInputError):
    """A device profile YAML is invalid. Exit code 2."""


class TargetSettings(BaseModel):
    """Base of a target's own settings section in a device profile (``ssh:``, ``adb:``, ...)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


@dataclass(frozen=True)
class Capabilities:
    """What a target can measure, as data: the device-profile schema and its checks are built from it."""

    #: runtime -> the delegates / execution providers it offers there
    runtimes: Mapping[str, tuple[str, ...]]
    #: runtimes among those that need an optional extra: measured only where a profile lists them
    optional_runtimes: tuple[str, ...] = ()
    #: ``real`` wall-clock latency, ``emulated`` instruction counts, ``simulated`` (no device latency), or
    #: ``estimated`` (a compiler's cost model: the target's output carries an ``estimate``, see profile/run.py)
    measures: Measures = "real"
    #: the ``arch`` values a profile of this kind may name
    arches: tuple[str, ...] = ARCHES[1:]
    #: most threads the device can use; None: the cores this process may run on (the target runs here)
    max_threads: Optional[int] = None

    def thread_limit(self) -> tuple[int, str | None]:
        """(most threads, why that many where it depends on this machine) for a profile of this kind."""
        if self.max_threads is not None:
            return self.max_threads, None
        cores = usable_cores()
        return cores, f"this machine has {cores} usable core{'s' if cores != 1 else ''}"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass
class CommandResult:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


class Target(ABC):
    """Context manager: ``with target: target.put(...); target.run([...]); target.get(...)``."""

    #: short kind name used in device profiles (``kind: ssh``)
    kind: ClassVar[str] = ""
    #: the settings section of this kind in a device profile (None: the kind has no settings)
    settings_model: ClassVar[Optional[type[TargetSettings]]] = None
    capabilities: ClassVar[Capabilities] = Capabilities(runtimes={})
    #: False when the target cannot run the on-device Python script itself (adb runs benchmark_model)
    runs_python: ClassVar[bool] = True
    #: True when timings from this target are not wall-clock latencies of real hardware (set from
    #: ``capabilities.measures``)
    emulated: bool = False
    simulated: bool = False

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "capabilities" in cls.__dict__:
            cls.emulated = cls.capabilities.measures == "emulated"
            cls.simulated = cls.capabilities.measures == "simulated"

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
