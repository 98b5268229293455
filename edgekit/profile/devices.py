"""Device profiles (``devices/*.yaml``): where and how to profile, validated like recipes.

A profile names a target kind, the runtimes and delegates to measure, the thread counts, the measurement
protocol, and one section with the settings of its kind. Everything kind-specific (the kinds, their
settings sections, what each can run, its architectures and thread limit) comes from the target
registry (``edgekit.targets``): the schema is built from it. Errors are one line: ``file:line: key: problem``.
"""

from __future__ import annotations

import math
import typing
from pathlib import Path
from typing import Annotated, Literal, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, ValidationError, create_model, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from edgekit.recipe.load import read_yaml, validate_against
from edgekit.targets import registry_version, settings_key, target_classes
from edgekit.targets.base import ARCHES, DeviceProfileError, Target
from edgekit.targets.local import platform_arch as machine_arch

#: absolute bounds: larger values are typos that would run for days (or crash qemu)
MAX_RUNS = 10_000_000
MAX_ROUNDS = 100
MAX_SECONDS = 86_400.0


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError("finite_number", "must be a finite number")
    return value


#: a float that is finite (NaN and infinity read "must be a finite number"), not a boolean
FiniteFloat = Annotated[float, Field(strict=True), BeforeValidator(_finite)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Protocol(Section):
    warmup_runs: StrictInt = Field(10, ge=0, le=MAX_RUNS, description="Untimed inferences before each round.")
    min_runs: StrictInt = Field(1024, ge=1, le=MAX_RUNS, description="Timed inferences per round, at least (MLPerf Mobile: 1024 queries in total).")
    min_seconds: FiniteFloat = Field(20.0, ge=0, le=MAX_SECONDS, description="Seconds per round, at least; 3 rounds of 20 s meet MLPerf Mobile's 60 s.")
    max_runs: Optional[int] = Field(None, strict=True, ge=1, le=MAX_RUNS, description="Stop a round after this many inferences even before `min_seconds`.")
    rounds: StrictInt = Field(3, ge=1, le=MAX_ROUNDS, description="Interleaved rounds (float, int8, float, int8, ...); the reported p50 is the median of the rounds' p50s.")
    timeout_seconds: FiniteFloat = Field(600.0, gt=0, le=MAX_SECONDS, description="Limit for one run of the profiling script on the target.")


class ProfileBase(Section):
    """A device profile; ``device_profile_model()`` makes the class with the fields of the registered kinds."""

    @model_validator(mode="after")
    def _consistent(self) -> "ProfileBase":
        problem = _first_problem(self)
        if problem:
            loc, message, got = problem
            detail = InitErrorDetails(type=PydanticCustomError("device_profile", message), loc=loc, input=got)
            raise ValidationError.from_exception_data(type(self).__name__, [detail])
        return self

    @property
    def target_class(self) -> type[Target]:
        return target_classes()[self.kind]

    @property
    def section(self) -> Optional[BaseModel]:
        """The settings section of this profile's kind (None for a kind without settings)."""
        return getattr(self, settings_key(self.kind)) if self.target_class.settings_model else None

    @property
    def resolved_arch(self) -> str:
        return machine_arch() if self.arch == "auto" else self.arch


_MODEL_CACHE: dict[tuple, type[ProfileBase]] = {}


def device_profile_model() -> type[ProfileBase]:
    """The DeviceProfile class for the targets registered now (rebuilt when the registry changes)."""
    version = registry_version()
    if version not in _MODEL_CACHE:
        _MODEL_CACHE.clear()
        _MODEL_CACHE[version] = _build_model(target_classes())
    return _MODEL_CACHE[version]


def _build_model(classes: dict[str, type[Target]]) -> type[ProfileBase]:
    offered: dict[str, list[str]] = {}
    for cls in classes.values():
        for runtime, delegates in cls.capabilities.runtimes.items():
            offered.setdefault(runtime, [])
            offered[runtime] += [delegate for delegate in delegates if delegate not in offered[runtime]]
    delegate_fields = {runtime: (list[Literal[tuple(delegates)]], Field([delegates[0]], min_length=1, description=f"{runtime} delegates / execution providers to measure, each separately."))
                       for runtime, delegates in offered.items()}
    delegates_model = create_model("Delegates", __base__=Section, **delegate_fields)
    usual = [runtime for runtime in offered if any(runtime in cls.capabilities.runtimes
                                                    and runtime not in cls.capabilities.optional_runtimes
                                                    for cls in classes.values())]
    # The kind sections are annotated with their class (not Optional[...]) so that error hints and the
    # generated docs can walk into them; None means "absent" and is never validated.
    sections = {settings_key(kind): (cls.settings_model, Field(None, description=f"Settings of kind `{kind}`."))
                for kind, cls in classes.items() if cls.settings_model}
    return create_model(
        "DeviceProfile", __base__=ProfileBase,
        name=(str, Field(..., min_length=1, description="Device name used in reports.")),
        description=(str, Field("", description="One sentence: what this device is and what its numbers mean.")),
        kind=(Literal[tuple(classes)], Field(..., description="Target kind: how edgekit reaches the device.")),
        arch=(Literal[ARCHES], Field(..., description="CPU architecture the profiling script runs on; `auto` (kinds that run on this machine): this machine's.")),
        cpu=(Optional[str], Field(None, description="CPU model, e.g. `Cortex-A72` (default: what the device reports).")),
        runtimes=(list[Literal[tuple(offered)]], Field(usual, min_length=1, description="Runtimes to measure; artifacts of other runtimes are skipped on this device.")),
        delegates=(delegates_model, Field(default_factory=delegates_model, description="Delegates / execution providers per runtime.")),
        threads=(list[StrictInt], Field([1], min_length=1, description="Thread counts to measure, each separately: 1 up to what the device can use (see the table above).")),
        protocol=(Protocol, Field(default_factory=Protocol, description="How many runs make a measurement.")),
        **sections,
    )


DeviceProfile = device_profile_model()


def load_device_profile(path: str | Path) -> ProfileBase:
    """Read and validate a device profile; any problem is a one-line DeviceProfileError (exit code 2)."""
    path = Path(path)
    data, lines = read_yaml(path, "device profile", DeviceProfileError)
    return validate_against(device_profile_model(), data, source=str(path), lines=lines, error=DeviceProfileError)


def check_thread_counts(profile: ProfileBase, counts: list[int], *, what: str = "threads") -> None:
    """DeviceProfileError unless every count is a plain int from 1 to what ``profile``'s device can use."""
    for index, count in enumerate(counts):
        problem = _thread_problem(profile, count)
        if problem:
            raise DeviceProfileError(f"{what}: {problem} (got {count!r})")


def _first_problem(profile: ProfileBase) -> Optional[tuple[tuple, str, object]]:
    """(location, message, offending value) of the first cross-field problem, or None."""
    for check in (_section_problem, _arch_problem, _capability_problem, _threads_problem):
        problem = check(profile)
        if problem:
            return problem
    return None


def _section_problem(profile: ProfileBase):
    own = profile.target_class.settings_model
    wanted = settings_key(profile.kind) if own else None
    if wanted and getattr(profile, wanted) is None:
        return ("kind",), f"kind {profile.kind} needs its section '{wanted}:' (see docs/devices.md)", {}
    for kind, cls in target_classes().items():
        key = settings_key(kind)
        if cls.settings_model and key != wanted and getattr(profile, key, None) is not None:
            return (key,), f"section '{key}' belongs to kind {kind}, but this profile's kind is {profile.kind}", {}
    return None


def _arch_problem(profile: ProfileBase):
    arches = profile.target_class.capabilities.arches
    if profile.arch not in arches:
        if profile.arch == "auto":
            kinds = [kind for kind, cls in target_classes().items() if "auto" in cls.capabilities.arches]
            return ("arch",), (f"arch auto is only allowed for kind {', '.join(kinds)} "
                               f"(say which arch the {profile.kind} device has)"), "auto"
        return ("arch",), f"kind {profile.kind} runs {' or '.join(arches)} code", profile.arch
    return None


def _capability_problem(profile: ProfileBase):
    supported = profile.target_class.capabilities.runtimes
    for index, runtime in enumerate(profile.runtimes):
        if runtime not in supported:
            return ("runtimes", index), f"kind {profile.kind} runs only {', '.join(supported)}", runtime
    for runtime in profile.runtimes:
        for index, delegate in enumerate(getattr(profile.delegates, runtime)):
            if delegate not in supported[runtime]:
                allowed = ", ".join(supported[runtime])
                return ("delegates", runtime, index), f"kind {profile.kind} supports {runtime} with {allowed}", delegate
    return None


def _threads_problem(profile: ProfileBase):
    for index, count in enumerate(profile.threads):
        problem = _thread_problem(profile, count)
        if problem:
            return ("threads", index), problem, count
    return None


def _thread_problem(profile: ProfileBase, count) -> Optional[str]:
    limit, why = profile.target_class.capabilities.thread_limit()
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= limit:
        return f"thread counts must be 1 to {limit} on kind {profile.kind}" + (f" ({why})" if why else "")
    return None


def device_schema_markdown() -> str:
    """The profile schema as a Markdown table, straight from the classes (docs/devices.md embeds it)."""
    from edgekit.recipe.docs import _default, _type_name

    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for name, field in device_profile_model().model_fields.items():
        section = field.annotation if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel) else None
        if section is None:
            rows.append(_schema_row(name, field, lambda annotation: _type_name(_plain(annotation)), _default))
            continue
        if field.default is None:
            rows.append(f"| `{name}` | section | absent | {field.description} Required with that kind, refused with others. |")
        for key, inner in section.model_fields.items():
            rows.append(_schema_row(f"{name}.{key}", inner, _type_name, _default))
    return "\n".join(rows)


def capabilities_markdown() -> str:
    """What each kind can run and measure, as a Markdown table from the targets' capabilities."""
    classes = target_classes()
    runtimes = sorted({runtime for cls in classes.values() for runtime in cls.capabilities.runtimes})
    rows = ["| kind | measures | " + " | ".join(runtimes) + " | arch | threads |",
            "| --- | --- | " + " | ".join("---" for _ in runtimes) + " | --- | --- |"]
    for kind, cls in classes.items():
        capabilities = cls.capabilities
        offered = [", ".join(capabilities.runtimes.get(runtime, ())) or "-" for runtime in runtimes]
        threads = f"1 to {capabilities.max_threads}" if capabilities.max_threads else "1 to this machine's cores"
        rows.append(f"| {kind} | {capabilities.measures} | " + " | ".join(offered)
                    + f" | {', '.join(capabilities.arches)} | {threads} |")
    return "\n".join(rows)


def _plain(annotation):
    """``list[Annotated[int, Strict()]]`` -> ``list[int]``: constraints are not part of the type shown."""
    if typing.get_origin(annotation) is Annotated:
        return _plain(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) is list:
        return list[_plain(typing.get_args(annotation)[0])]
    return annotation


def _schema_row(key_path: str, field, type_name, default) -> str:
    shown = "required" if field.is_required() else default(field)
    return f"| `{key_path}` | {type_name(field.annotation)} | {shown} | {field.description or ''} |"
