"""Targets: where the on-device profiling script runs. A registry of kind -> class, imported lazily.

Each class takes the device profile in its constructor (``Cls(profile)``); its module is imported only
when a profile of that kind is used, so a missing SDK of one kind never breaks the others.
"""

from __future__ import annotations

import importlib

from edgekit.errors import suggest
from edgekit.targets.base import CommandResult, DeviceProfileError, Target, TargetError, TargetUnavailable

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

__all__ = [
    "CommandResult", "Target", "TargetError", "TargetUnavailable", "make_target", "list_targets",
    "register_target", "target_class",
]
