"""``edgekit devices setup|check PROFILE.yaml``: prepare a device profile's target, or say why it cannot run.

``setup`` does what the profile's kind needs on this machine and is idempotent (a second run takes
seconds): emulated-arm64 builds and caches the aarch64 sysroot, the CPU description and the counting
plugin; qnn-htp checks the onnxruntime-qnn plugin; adb checks adb, the phone and benchmark_model;
local and ssh just check. ``check`` only reports whether the target is usable here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(commands) -> argparse.ArgumentParser:
    """Add ``devices`` (with ``setup`` and ``check``) to ``edgekit``'s sub-parsers."""
    devices = commands.add_parser("devices", help="prepare or check the target of a device profile")
    actions = devices.add_subparsers(dest="devices_command", required=True, metavar="ACTION")
    setup = actions.add_parser("setup", help="build what the profile's target needs here (cached, idempotent)")
    setup.add_argument("profile", type=Path, metavar="PROFILE.yaml", help="device profile, e.g. devices/arm64-cortex-a76-emulated.yaml")
    setup.set_defaults(handler=run_setup)
    check = actions.add_parser("check", help="say whether the profile's target can be used here, and why not")
    check.add_argument("profile", type=Path, metavar="PROFILE.yaml")
    check.set_defaults(handler=run_check)
    return devices


def run_setup(args) -> int:
    from edgekit.profile.devices import load_device_profile
    from edgekit.targets.base import TargetUnavailable

    profile = load_device_profile(args.profile)
    say = _printer(profile.name)
    if profile.kind == "emulated-arm64":
        from edgekit.targets.sysroot import setup_sysroot

        settings = profile.emulated_arm64
        say(f"emulated {settings.qemu_cpu}: sysroot in {Path(settings.sysroot).expanduser()}")
        setup_sysroot(settings.sysroot, settings.qemu_cpu, say=say)
    ok, why = _target_available(profile)
    if not ok:
        raise TargetUnavailable(f"device {profile.name} ({profile.kind}) is not usable here: {why}")
    say(f"ready: {profile.kind} target usable here")
    return 0


def run_check(args) -> int:
    from edgekit.profile.devices import load_device_profile

    profile = load_device_profile(args.profile)
    ok, why = _target_available(profile)
    print(f"{profile.name} ({profile.kind}): {'ready' if ok else 'not available: ' + why}")
    return 0 if ok else 1


def _target_available(profile) -> tuple[bool, str]:
    from edgekit.targets import make_target

    with make_target(profile, check_available=False) as target:
        return target.available()


def _printer(name: str):
    def say(line: str) -> None:
        print(f"devices setup {name}: {line}", file=sys.stderr, flush=True)

    return say
