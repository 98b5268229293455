"""``edgekit devices setup|check PROFILE.yaml``: prepare a device profile's target, or say why it cannot run.

``setup`` does what the profile's kind needs on this machine and is idempotent (a second run takes
seconds): emulated-arm64 builds and caches the aarch64 sysroot, the CPU description and the counting
plugin; qnn-htp checks the onnxruntime-qnn plugin; adb checks adb, the phone and benchmark_model;
local and ssh just check. ``check`` connects to the target and runs the on-device script's self-check
there (numpy and the runtimes the profile lists): "ready" means a profile run can start.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

#: seconds for the self-check (connecting, copying the script, importing the runtimes; slow under qemu)
SELF_CHECK_TIMEOUT = 300.0


def add_parser(commands) -> argparse.ArgumentParser:
    """Add ``devices`` (with ``setup`` and ``check``) to ``edgekit``'s sub-parsers."""
    devices = commands.add_parser("devices", help="prepare or check the target of a device profile")
    actions = devices.add_subparsers(dest="devices_command", required=True, metavar="ACTION")
    setup = actions.add_parser("setup", help="build what the profile's target needs here (cached, idempotent)")
    setup.add_argument("profile", type=Path, metavar="PROFILE.yaml", help="device profile, e.g. devices/arm64-cortex-a76-emulated.yaml")
    setup.add_argument("--mirror", metavar="URL", help="Debian mirror for the emulated sysroot (default: "
                       "$EDGEKIT_DEBIAN_MIRROR, else the one in this machine's apt sources)")
    setup.set_defaults(handler=run_setup)
    check = actions.add_parser("check", help="connect to the profile's target and say whether it is ready, and why not")
    check.add_argument("profile", type=Path, metavar="PROFILE.yaml")
    check.set_defaults(handler=run_check)
    return devices


def run_setup(args) -> int:
    from edgekit.profile.devices import load_device_profile
    from edgekit.targets import make_target

    profile = load_device_profile(args.profile)
    say = _printer(profile.name)
    if profile.kind == "emulated-arm64":
        from edgekit.targets.sysroot import setup_sysroot

        settings = profile.emulated_arm64
        say(f"emulated {settings.qemu_cpu}: sysroot in {Path(settings.sysroot).expanduser()}")
        setup_sysroot(settings.sysroot, settings.qemu_cpu, say=say, mirror=getattr(args, "mirror", None))
    with make_target(profile):  # TargetUnavailable (with why) when it is still not usable
        pass
    say(f"ready: {profile.kind} target usable here")
    return 0


def run_check(args) -> int:
    from edgekit.profile.devices import load_device_profile

    profile = load_device_profile(args.profile)
    why = readiness_problem(profile)
    print(f"{profile.name} ({profile.kind}): {'ready' if why is None else 'not ready: ' + why}")
    return 0 if why is None else 1


def readiness_problem(profile) -> str | None:
    """None when a profile run can start on ``profile``'s target, else one line saying what is missing."""
    from edgekit.targets import TargetError, make_target

    with make_target(profile, check_available=False) as target:
        ok, why = target.available()
        if not ok:
            return why
        if not target.runs_python:
            return None
        try:
            return _self_check(target, profile)
        except TargetError as exc:
            return str(exc)


def _self_check(target, profile) -> str | None:
    """Run ``ondevice.py --self-check`` on the target: it imports numpy and the profile's runtimes."""
    from edgekit.profile.run import ONDEVICE_SCRIPT
    from edgekit.targets.local import last_line

    script = target.put(ONDEVICE_SCRIPT, ONDEVICE_SCRIPT.name)
    python = getattr(target, "python", None) or "python3"
    result = target.run([python, script, "--self-check", ",".join(profile.runtimes)], timeout=SELF_CHECK_TIMEOUT)
    report = _last_json(result.stdout)
    if report is None:
        return f"{python} could not run the on-device script: {last_line(result.stderr) or f'exit code {result.returncode}'}"
    if report.get("missing"):
        return f"missing on the device ({python}, Python {report.get('python')}): {', '.join(report['missing'])}"
    return None


def _last_json(stdout: str) -> dict | None:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    try:
        report = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    return report if isinstance(report, dict) else None


def _printer(name: str):
    def say(line: str) -> None:
        print(f"devices setup {name}: {line}", file=sys.stderr, flush=True)

    return say
