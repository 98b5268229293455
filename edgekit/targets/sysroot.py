"""The aarch64 sysroot of the emulated-arm64 target, built by ``edgekit devices setup`` and cached.

Layout under the profile's ``emulated_arm64.sysroot`` folder::

    base/            Debian bookworm arm64 (minbase + python3) and the runtimes' aarch64 wheels in opt/edgekit-site
    cpu-<qemu_cpu>/  what qemu's -L points at: symlinks into base/ plus a fake proc/cpuinfo and
                     sys/devices/system/cpu matching that CPU (outside a chroot the wheels would read the
                     x86 host's files; a CPU description that does not match -cpu crashes kernels with SIGILL)
    plugin/          edgekit_insn-<hash>.so, the instruction-counting plugin compiled from qemu_insn.c

Nothing runs under emulation while building: debootstrap --foreign only downloads and unpacks, every
downloaded .deb is unpacked with dpkg-deb -x, and pip installs wheels for another platform with --target.
Each step leaves a stamp; a second run finds the stamps and takes a second.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgekit.targets.base import TargetError, TargetUnavailable

SUITE = "bookworm"  # Python 3.11, the version of the pinned cp311 wheels below
#: environment variable naming the Debian mirror debootstrap downloads from (else: apt's own sources)
MIRROR_ENV = "EDGEKIT_DEBIAN_MIRROR"
#: Runtime wheels installed into the sysroot (aarch64 builds of the versions edgekit pins on the host).
WHEELS = ("onnxruntime==1.32.0", "ai-edge-litert==2.3.0", "numpy==2.4.6")
GLIBC_MINOR = 36  # bookworm's glibc 2.36: accept manylinux_2_17 .. manylinux_2_36 wheels
PYTHON = "usr/bin/python3.11"
SITE = "opt/edgekit-site"
FAKE_CORES = 4
#: top-level folders of base/ that are not linked into a CPU view (host paths must stay visible there)
NOT_LINKED = {"dev", "proc", "sys", "tmp", "run", "home", "root", "boot", "media", "mnt", "srv", "debootstrap"}
PLUGIN_SOURCE = Path(__file__).with_name("qemu_insn.c")
SETUP_HINT = "run `sudo bash scripts/setup-emulation.sh`, then `edgekit devices setup PROFILE.yaml`"


@dataclass(frozen=True)
class CpuModel:
    midr: int  # MIDR_EL1 as qemu's model reports it
    features: str  # /proc/cpuinfo Features of that core

    def cpuinfo(self, cores: int) -> str:
        variant, part, revision = (self.midr >> 20) & 0xF, (self.midr >> 4) & 0xFFF, self.midr & 0xF
        block = (f"processor\t: {{index}}\nBogoMIPS\t: 50.00\nFeatures\t: {self.features}\nCPU implementer\t: 0x41\n"
                 f"CPU architecture: 8\nCPU variant\t: {variant:#x}\nCPU part\t: {part:#05x}\nCPU revision\t: {revision}\n")
        return "\n".join(block.format(index=index) for index in range(cores))


_V82 = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
CPU_MODELS = {
    "cortex-a72": CpuModel(0x410FD083, "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"),
    "cortex-a76": CpuModel(0x414FD0B1, _V82),
    "neoverse-n1": CpuModel(0x414FD0C1, _V82 + " ssbs"),
}


@dataclass(frozen=True)
class SysrootPaths:
    root: Path
    qemu_cpu: str

    @property
    def base(self) -> Path:
        return self.root / "base"

    @property
    def view(self) -> Path:
        return self.root / f"cpu-{self.qemu_cpu}"

    @property
    def python(self) -> Path:
        return self.view / PYTHON

    @property
    def site(self) -> Path:
        return self.base / SITE

    @property
    def plugin(self) -> Path:
        digest = hashlib.sha256(PLUGIN_SOURCE.read_bytes()).hexdigest()[:12]
        return self.root / "plugin" / f"edgekit_insn-{digest}.so"


def sysroot_paths(sysroot: str | Path, qemu_cpu: str) -> SysrootPaths:
    if qemu_cpu not in CPU_MODELS:
        raise TargetError(f"qemu_cpu '{qemu_cpu}' is not supported (one of: {', '.join(CPU_MODELS)})")
    return SysrootPaths(Path(sysroot).expanduser().resolve(), qemu_cpu)


def sysroot_ready(paths: SysrootPaths) -> tuple[bool, str]:
    """(True, "") when setup has completed for this CPU, else (False, what is missing)."""
    for stamp, what in ((_stamp(paths.base, "base"), "the aarch64 sysroot"),
                        (_stamp(paths.view, "view"), f"the {paths.qemu_cpu} CPU description"),
                        (paths.plugin, "the instruction-counting plugin")):
        if not stamp.is_file():
            return False, f"{what} is not built in {paths.root}; {SETUP_HINT}"
    return True, ""


def setup_sysroot(sysroot: str | Path, qemu_cpu: str, *, say: Callable[[str], None] = print,
                  mirror: str | None = None) -> SysrootPaths:
    """Build (or find cached) everything the emulated-arm64 target needs for ``qemu_cpu``; idempotent.
    ``mirror``: the Debian mirror for the sysroot (default: $EDGEKIT_DEBIAN_MIRROR, else apt's sources)."""
    paths = sysroot_paths(sysroot, qemu_cpu)
    _check_tools()
    steps = [("aarch64 Debian sysroot", lambda paths, say: _build_base(paths, say, mirror)),
             ("runtime wheels", _install_wheels), (f"{qemu_cpu} CPU description", _write_cpu_view),
             ("instruction-counting plugin", _build_plugin)]
    for number, (what, step) in enumerate(steps, 1):
        say(f"[{number}/{len(steps)}] {what}: {step(paths, say)}")
    return paths


def _check_tools() -> None:
    tools = {"debootstrap": "debootstrap", "dpkg-deb": "dpkg", "qemu-aarch64": "qemu-user", "gcc": "gcc",
             "pkg-config": "pkg-config", "apt-get": "apt"}
    missing = sorted(f"{tool} ({package})" for tool, package in tools.items() if not shutil.which(tool))
    if missing:
        raise TargetUnavailable(f"missing tools: {', '.join(missing)}", hint=SETUP_HINT)
    if subprocess.run(["pkg-config", "--exists", "glib-2.0"]).returncode != 0:
        raise TargetUnavailable("glib-2.0 development files are missing", hint=SETUP_HINT)


def _stamp(folder: Path, step: str) -> Path:
    return folder / f".edgekit-{step}.json"


def _done(folder: Path, step: str, key: dict) -> bool:
    try:
        return json.loads(_stamp(folder, step).read_text()) == key
    except (OSError, ValueError):
        return False


def _mark_done(folder: Path, step: str, key: dict) -> None:
    _stamp(folder, step).write_text(json.dumps(key, sort_keys=True))


def _build_base(paths: SysrootPaths, say, mirror: str | None = None) -> str:
    key = {"suite": SUITE, "variant": "minbase", "include": ["python3"]}
    if _done(paths.base, "base", key):
        return "cached"
    if os.geteuid() != 0:
        raise TargetUnavailable("building the sysroot needs root (debootstrap unpacks files owned by root)",
                                hint="run `sudo edgekit devices setup PROFILE.yaml` once")
    mirror = debian_mirror(mirror)
    shutil.rmtree(paths.base, ignore_errors=True)
    paths.base.mkdir(parents=True)
    say(f"      debootstrap --arch=arm64 --foreign --variant=minbase --include=python3 {SUITE} from {mirror} (~30 s)")
    _run(["debootstrap", "--arch=arm64", "--foreign", "--variant=minbase", "--include=python3", SUITE,
          str(paths.base), mirror], "debootstrap", timeout=1800)
    # --foreign unpacks only the required packages; unpack the rest (python3 and its dependencies) too
    for deb in sorted((paths.base / "var/cache/apt/archives").glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(paths.base)], f"dpkg-deb -x {deb.name}", timeout=300)
    if not (paths.base / PYTHON).exists():
        raise TargetError(f"the sysroot has no {PYTHON} after unpacking; remove {paths.base} and retry")
    _mark_done(paths.base, "base", key)
    return f"built in {paths.base}"


def _install_wheels(paths: SysrootPaths, say) -> str:
    key = {"wheels": list(WHEELS), "python": "3.11"}
    if _done(paths.site, "wheels", key):
        return "cached"
    shutil.rmtree(paths.site, ignore_errors=True)
    say(f"      pip install --target {paths.site} (aarch64 wheels: {', '.join(WHEELS)})")
    platforms = [f"manylinux_2_{minor}_aarch64" for minor in range(GLIBC_MINOR, 16, -1)] + ["manylinux2014_aarch64"]
    argv = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-warn-conflicts",
            "--target", str(paths.site), "--python-version", "3.11", "--implementation", "cp",
            "--only-binary=:all:", *(arg for platform in platforms for arg in ("--platform", platform)), *WHEELS]
    _run(argv, "pip install (aarch64 wheels)", timeout=1800)
    _mark_done(paths.site, "wheels", key)
    return f"installed in {paths.site}"


def _write_cpu_view(paths: SysrootPaths, say) -> str:
    model = CPU_MODELS[paths.qemu_cpu]
    key = {"midr": model.midr, "features": model.features, "cores": FAKE_CORES}
    if _done(paths.view, "view", key):
        return "cached"
    shutil.rmtree(paths.view, ignore_errors=True)
    paths.view.mkdir(parents=True)
    for entry in sorted(paths.base.iterdir()):
        if entry.name not in NOT_LINKED and not entry.name.startswith("."):
            (paths.view / entry.name).symlink_to(Path("..") / "base" / entry.name)
    (paths.view / "proc").mkdir()
    (paths.view / "proc/cpuinfo").write_text(model.cpuinfo(FAKE_CORES))
    cpus = paths.view / "sys/devices/system/cpu"
    cpus.mkdir(parents=True)
    for name in ("possible", "present", "online"):
        (cpus / name).write_text(f"0-{FAKE_CORES - 1}\n")
    for index in range(FAKE_CORES):
        identification = cpus / f"cpu{index}/regs/identification"
        identification.mkdir(parents=True)
        (identification / "midr_el1").write_text(f"{model.midr:#018x}\n")
    _mark_done(paths.view, "view", key)
    return f"written in {paths.view}"


def _build_plugin(paths: SysrootPaths, say) -> str:
    if paths.plugin.is_file():
        return "cached"
    folder = paths.plugin.parent
    folder.mkdir(parents=True, exist_ok=True)
    header = folder / "qemu-plugin.h"
    if not header.is_file():
        say("      apt-get source --download-only qemu (for include/qemu/qemu-plugin.h, GPL-2.0-or-later)")
        _fetch_plugin_header(header)
    glib = subprocess.run(["pkg-config", "--cflags", "--libs", "glib-2.0"], capture_output=True, text=True).stdout.split()
    partial = paths.plugin.with_suffix(".partial")
    _run(["gcc", "-O2", "-shared", "-fPIC", "-Wall", f"-I{folder}", str(PLUGIN_SOURCE), "-o", str(partial), *glib],
         "gcc (instruction-counting plugin)", timeout=120)
    os.replace(partial, paths.plugin)
    return f"compiled {paths.plugin.name}"


def _fetch_plugin_header(header: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="edgekit-qemu-src-") as scratch:
        _run(["apt-get", "source", "--download-only", "qemu"], "apt-get source qemu", timeout=900, cwd=scratch,
             hint="the machine needs a deb-src line: run `sudo bash scripts/setup-emulation.sh`")
        tarballs = sorted(Path(scratch).glob("qemu_*.orig.tar.*"))
        if not tarballs:
            raise TargetError("apt-get source qemu gave no orig tarball")
        with tarfile.open(tarballs[0]) as tar:
            member = next((m for m in tar if m.name.endswith("include/qemu/qemu-plugin.h")), None)
            if member is None:
                raise TargetError(f"{tarballs[0].name} has no include/qemu/qemu-plugin.h")
            header.write_bytes(tar.extractfile(member).read())


def debian_mirror(option: str | None = None, *, etc_apt: Path = Path("/etc/apt")) -> str:
    """The Debian mirror to build the sysroot from: ``option``, else $EDGEKIT_DEBIAN_MIRROR, else the one
    this machine's apt uses for the suite; TargetUnavailable (one line) when there is none."""
    for given in (option, os.environ.get(MIRROR_ENV)):
        if given and given.strip():
            return given.strip().rstrip("/")
    mirror = apt_mirror(etc_apt)
    if mirror is None:
        raise TargetUnavailable(
            f"no Debian mirror for {SUITE}: none in {etc_apt}/sources.list or {etc_apt}/sources.list.d/",
            hint=f"set {MIRROR_ENV}=URL or pass `edgekit devices setup --mirror URL`")
    return mirror


def apt_mirror(etc_apt: Path = Path("/etc/apt")) -> str | None:
    """The first ``deb`` URI that apt's sources (one-line .list or deb822 .sources) give for the suite."""
    folder = etc_apt / "sources.list.d"
    files = [etc_apt / "sources.list", *sorted(folder.glob("*.list")), *sorted(folder.glob("*.sources"))]
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        read = _deb822_uris if path.suffix == ".sources" else _one_line_uris
        for uri in read(text):
            return uri.rstrip("/")
    return None


def _one_line_uris(text: str) -> list[str]:
    """``deb [options] URI SUITE COMPONENT...`` lines naming the suite."""
    uris = []
    for line in text.splitlines():
        words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
            uris.append(words[1])
    return uris


def _deb822_uris(text: str) -> list[str]:
    """URIs of the stanzas with ``Types: deb`` and the suite among their ``Suites``, not ``Enabled: no``."""
    uris = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, list[str]] = {}
        for line in stanza.splitlines():
            key, sep, value = line.partition(":")
            if sep and not line.startswith(("#", " ", "\t")):
                fields[key.strip().lower()] = value.split()
        if ("deb" in fields.get("types", []) and SUITE in fields.get("suites", [])
                and fields.get("enabled", ["yes"])[0].lower() != "no"):
            uris += fields.get("uris", [])
    return uris


def _run(argv: list[str], what: str, *, timeout: float, cwd: str | None = None, hint: str | None = None) -> None:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired:
        raise TargetError(f"{what} timed out after {timeout:g} s") from None
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise TargetError(f"{what} failed (exit {done.returncode}): {last[0][:300]}", hint=hint)
