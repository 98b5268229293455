"""Targets: where the on-device profiling script runs. A registry of kind -> class.

Each class takes the device profile in its constructor (``Cls(profile)``) and declares its settings
model and its capabilities; the device-profile schema (edgekit.profile.devices) is built from this
registry. Target modules import their SDKs only inside methods, so that importing every registered
class (to build the schema) never needs an SDK; a module that is missing reads as TargetUnavailable.
A new target is one module plus one ``register_target`` line below.
"""

from __future__ import annotations

import importlib

from edgekit.errors import suggest
from edgekit.targets.base import (
    Capabilities, CommandResult, DeviceProfileError, Target, TargetError, TargetSettings, TargetUnavailable,
)

#: kind -> "module:Class"
_TARGETS: dict[str, str] = {}


def register_target(kind: str, import_path: str) -> None:
    """Register (or replace) the class for ``kind`` as ``"package.module:ClassName"``."""
    if ":" not in import_path:
        raise ValueError(f"register_target({kind!r}, {import_path!r}): expected 'module:Class'")
    _TARGETS[kind] = import_path


def list_targets() -> list[str]:
    return sorted(_TARGETS)


def target_class(kind: str) -> type[Target]:
    """The Target class for ``kind``; TargetUnavailable when its module is not installed here."""
    if kind not in _TARGETS:
        hint = suggest(kind, _TARGETS)
        raise DeviceProfileError(f"unknown target kind '{kind}' (known: {', '.join(list_targets())})", hint=hint)
    module_name, class_name = _TARGETS[kind].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise TargetUnavailable(f"target kind '{kind}' is not available here: module {exc.name} is missing") from None
    return getattr(module, class_name)


def target_classes() -> dict[str, type[Target]]:
    """Every registered kind with its class, in registration order (imports each target module)."""
    return {kind: target_class(kind) for kind in _TARGETS}


def settings_key(kind: str) -> str:
    """The key of a kind's settings section in a device profile: ``emulated-arm64`` -> ``emulated_arm64``."""
    return kind.replace("-", "_")


def registry_version() -> tuple:
    """Changes whenever a target is registered or replaced (the profile schema is rebuilt then)."""
    return tuple(sorted(_TARGETS.items()))


def make_target(profile, *, check_available: bool = True) -> Target:
    """Build the target a device profile describes; TargetUnavailable (with why) when it cannot work here."""
    target = target_class(profile.kind)(profile)
    if check_available:
        ok, why = target.available()
        if not ok:
            target.cleanup()
            raise TargetUnavailable(f"device {profile.name} ({profile.kind}) is not available here: {why}")
    return target


register_target("local", "edgekit.targets.local:LocalTarget")
register_target("ssh", "edgekit.targets.ssh:SshTarget")
register_target("emulated-arm64", "edgekit.targets.emulated:EmulatedArm64Target")
register_target("adb", "edgekit.targets.adb:AdbTarget")
register_target("qnn-htp", "edgekit.targets.qnn:QnnHtpTarget")
register_target("ethos-u", "edgekit.targets.ethos_u:EthosUTarget")

__all__ = [
    "Capabilities", "CommandResult", "Target", "TargetError", "TargetSettings", "TargetUnavailable", "make_target",
    "list_targets", "register_target", "registry_version", "settings_key", "target_class", "target_classes",
]
