"""Device profiles (``devices/*.yaml``): where and how to profile, validated like recipes.

A profile names a target kind (this machine, a board over ssh, an emulated ARM core, a phone over adb,
Qualcomm's HTP simulator), the runtimes and delegates to measure, the thread counts, the measurement
protocol, and one section with the settings of its kind. Errors are one line: ``file:line: key: problem``.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from edgekit.recipe.load import read_yaml, validate_against
from edgekit.targets.base import DeviceProfileError

Kind = Literal["local", "ssh", "emulated-arm64", "adb", "qnn-htp"]
Runtime = Literal["onnxruntime", "litert"]
LitertDelegate = Literal["xnnpack", "gpu", "nnapi", "hexagon", "none"]
OnnxProvider = Literal["cpu", "qnn-htp"]

#: What each kind of target can run: runtime -> delegates / execution providers (capabilities as data).
KIND_CAPABILITIES: dict[str, dict[str, tuple[str, ...]]] = {
    "local": {"onnxruntime": ("cpu",), "litert": ("xnnpack", "none")},
    "ssh": {"onnxruntime": ("cpu",), "litert": ("xnnpack", "none")},
    "emulated-arm64": {"onnxruntime": ("cpu",), "litert": ("xnnpack", "none")},
    "adb": {"litert": ("xnnpack", "gpu", "nnapi", "hexagon", "none")},
    "qnn-htp": {"onnxruntime": ("qnn-htp", "cpu")},
}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Delegates(Section):
    onnxruntime: list[OnnxProvider] = Field(["cpu"], min_length=1, description="onnxruntime execution providers to measure, each separately.")
    litert: list[LitertDelegate] = Field(["xnnpack"], min_length=1, description="LiteRT delegates to measure, each separately (`none`: the built-in kernels without XNNPACK).")


class Protocol(Section):
    warmup_runs: int = Field(10, ge=0, description="Untimed inferences before each round.")
    min_runs: int = Field(1024, ge=1, description="Timed inferences per round, at least (MLPerf Mobile: 1024 queries in total).")
    min_seconds: float = Field(20.0, ge=0, description="Seconds per round, at least; 3 rounds of 20 s meet MLPerf Mobile's 60 s.")
    max_runs: Optional[int] = Field(None, ge=1, description="Stop a round after this many inferences even before `min_seconds`.")
    rounds: int = Field(3, ge=1, description="Interleaved rounds (float, int8, float, int8, ...); the reported p50 is the median of the rounds' p50s.")
    timeout_seconds: float = Field(600.0, gt=0, description="Limit for one run of the profiling script on the target.")


class SshSettings(Section):
    host: str = Field(..., description="Host name or address of the board.")
    user: Optional[str] = Field(None, description="Login user (default: ssh's own default).")
    port: int = Field(22, ge=1, le=65535, description="ssh port.")
    identity_file: Optional[str] = Field(None, description="Private key file (`ssh -i`); `~` is expanded.")
    known_hosts: Optional[str] = Field(None, description="known_hosts file to use instead of `~/.ssh/known_hosts`.")
    host_key_checking: Literal["accept-new", "yes"] = Field("accept-new", description="`accept-new`: trust a host key on first use; `yes`: the key must already be in known_hosts.")
    connect_timeout_seconds: int = Field(10, ge=1, description="Give up connecting after this many seconds.")
    python: str = Field("python3", min_length=1, description="Python interpreter on the board (with onnxruntime / ai-edge-litert installed).")
    workdir: str = Field("/tmp", min_length=1, description="Directory on the board in which a temporary work directory is made.")

    @field_validator("host", "user")
    @classmethod
    def _plain_word(cls, value: Optional[str]) -> Optional[str]:
        # ssh would read a leading '-' as an option; '@' and spaces would change the login
        if value is not None and (not value or value.startswith("-") or any(c.isspace() or c == "@" for c in value)):
            raise ValueError("must be a plain name: no spaces or '@', not starting with '-'")
        return value


class EmulatedArm64Settings(Section):
    qemu_cpu: Literal["cortex-a72", "cortex-a76", "neoverse-n1"] = Field(..., description="CPU model qemu emulates (`-cpu`); never `max` (see docs/devices.md).")
    sysroot: str = Field("~/.cache/edgekit/sysroot-arm64", description="aarch64 sysroot with Python and the runtimes (made by `edgekit devices setup`).")


class AdbSettings(Section):
    serial: Optional[str] = Field(None, description="Device serial (`adb -s`); default: the only attached device.")
    benchmark_model: str = Field(..., min_length=1, description="Path on this machine of TFLite's Android `benchmark_model` binary.")
    device_dir: str = Field("/data/local/tmp/edgekit", min_length=1, description="Work directory on the phone.")


class QnnHtpSettings(Section):
    htp_arch: int = Field(75, ge=68, description="Hexagon HTP architecture version (e.g. 75 for Snapdragon 8 Gen 3).")
    soc_model: int = Field(57, ge=0, description="QNN SoC model id (e.g. 57 for Snapdragon 8 Gen 3).")
    backend_path: Optional[str] = Field(None, description="libQnnHtp.so to use (default: the one shipped in onnxruntime-qnn).")


#: kind -> the key of its section in the profile (None: the kind needs no section)
KIND_SECTIONS: dict[str, Optional[str]] = {
    "local": None, "ssh": "ssh", "emulated-arm64": "emulated_arm64", "adb": "adb", "qnn-htp": "qnn_htp",
}


class DeviceProfile(Section):
    name: str = Field(..., min_length=1, description="Device name used in reports.")
    description: str = Field("", description="One sentence: what this device is and what its numbers mean.")
    kind: Kind = Field(..., description="Target kind: how edgekit reaches the device.")
    arch: Literal["auto", "x86_64", "aarch64", "armv7"] = Field(..., description="CPU architecture the profiling script runs on; `auto` (kind `local` only): this machine's.")
    cpu: Optional[str] = Field(None, description="CPU model, e.g. `Cortex-A72` (default: what the device reports).")
    runtimes: list[Runtime] = Field(["onnxruntime", "litert"], min_length=1, description="Runtimes to measure; artifacts of other runtimes are skipped on this device.")
    delegates: Delegates = Field(default_factory=Delegates, description="Delegates / execution providers per runtime.")
    threads: list[int] = Field([1], min_length=1, description="Thread counts to measure, each separately.")
    protocol: Protocol = Field(default_factory=Protocol, description="How many runs make a measurement.")
    # The kind sections are annotated with their class (not Optional[...]) so that error hints and the
    # generated docs can walk into them; None means "absent" and is never validated.
    ssh: SshSettings = Field(None, description="Settings of kind `ssh`.")
    emulated_arm64: EmulatedArm64Settings = Field(None, description="Settings of kind `emulated-arm64`.")
    adb: AdbSettings = Field(None, description="Settings of kind `adb`.")
    qnn_htp: QnnHtpSettings = Field(None, description="Settings of kind `qnn-htp`.")

    @field_validator("threads")
    @classmethod
    def _threads_positive(cls, threads: list[int]) -> list[int]:
        if any(count < 1 for count in threads):
            raise ValueError("thread counts must be 1 or more")
        return threads

    @model_validator(mode="after")
    def _consistent(self) -> "DeviceProfile":
        problem = _first_problem(self)
        if problem:
            loc, message, got = problem
            detail = InitErrorDetails(type=PydanticCustomError("device_profile", message), loc=loc, input=got)
            raise ValidationError.from_exception_data(type(self).__name__, [detail])
        return self

    @property
    def section(self) -> Optional[BaseModel]:
        """The settings section of this profile's kind (None for ``local``)."""
        key = KIND_SECTIONS[self.kind]
        return getattr(self, key) if key else None

    @property
    def resolved_arch(self) -> str:
        return machine_arch() if self.arch == "auto" else self.arch


def machine_arch() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64", "armv7l": "armv7"}.get(machine, machine)


def load_device_profile(path: str | Path) -> DeviceProfile:
    """Read and validate a device profile; any problem is a one-line DeviceProfileError (exit code 2)."""
    path = Path(path)
    data, lines = read_yaml(path, "device profile", DeviceProfileError)
    return validate_against(DeviceProfile, data, source=str(path), lines=lines, error=DeviceProfileError)


def _first_problem(profile: DeviceProfile) -> Optional[tuple[tuple, str, object]]:
    """(location, message, offending value) of the first cross-field problem, or None."""
    for check in (_section_problem, _arch_problem, _capability_problem):
        problem = check(profile)
        if problem:
            return problem
    return None


def _section_problem(profile: DeviceProfile):
    wanted = KIND_SECTIONS[profile.kind]
    if wanted and getattr(profile, wanted) is None:
        return ("kind",), f"kind {profile.kind} needs its section '{wanted}:' (see docs/devices.md)", {}
    for kind, key in KIND_SECTIONS.items():
        if key and key != wanted and getattr(profile, key) is not None:
            return (key,), f"section '{key}' belongs to kind {kind}, but this profile's kind is {profile.kind}", {}
    return None


def _arch_problem(profile: DeviceProfile):
    if profile.arch == "auto" and profile.kind != "local":
        return ("arch",), f"arch auto is only allowed for kind local (say which arch the {profile.kind} device has)", "auto"
    if profile.kind == "emulated-arm64" and profile.arch != "aarch64":
        return ("arch",), "kind emulated-arm64 runs aarch64 code", profile.arch
    return None


def _capability_problem(profile: DeviceProfile):
    supported = KIND_CAPABILITIES[profile.kind]
    for index, runtime in enumerate(profile.runtimes):
        if runtime not in supported:
            return ("runtimes", index), f"kind {profile.kind} runs only {', '.join(supported)}", runtime
    for runtime in profile.runtimes:
        for index, delegate in enumerate(getattr(profile.delegates, runtime)):
            if delegate not in supported[runtime]:
                allowed = ", ".join(supported[runtime])
                return ("delegates", runtime, index), f"kind {profile.kind} supports {runtime} with {allowed}", delegate
    return None


def device_schema_markdown() -> str:
    """The profile schema as a Markdown table, straight from the classes (docs/devices.md embeds it)."""
    from edgekit.recipe.docs import _default, _type_name

    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for name, field in DeviceProfile.model_fields.items():
        section = field.annotation if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel) else None
        if section is None:
            rows.append(_schema_row(name, field, _type_name, _default))
            continue
        if field.default is None:
            rows.append(f"| `{name}` | section | absent | {field.description} Required with that kind, refused with others. |")
        for key, inner in section.model_fields.items():
            rows.append(_schema_row(f"{name}.{key}", inner, _type_name, _default))
    return "\n".join(rows)


def _schema_row(key_path: str, field, type_name, default) -> str:
    shown = "required" if field.is_required() else default(field)
    return f"| `{key_path}` | {type_name(field.annotation)} | {shown} | {field.description or ''} |"
