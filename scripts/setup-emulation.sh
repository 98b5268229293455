#!/usr/bin/env bash
# Install what the emulated-arm64 target needs from Debian (idempotent; run as root).
#   sudo bash scripts/setup-emulation.sh
# Then `edgekit devices setup devices/<profile>.yaml` builds the aarch64 sysroot and the plugin (no root).
#   debootstrap     fetches an arm64 Debian (Python 3.11) into a folder, nothing run under emulation
#   qemu-user       the dynamic qemu-aarch64: runs that Python on this x86 machine and loads TCG plugins
#                   (qemu-user-static cannot load plugins, so it is not needed)
#   gcc, pkg-config, libglib2.0-dev   compile the instruction-counting plugin (edgekit/targets/qemu_insn.c)
#   dpkg-dev + a deb-src line         `apt-get source qemu` gives include/qemu/qemu-plugin.h, which no
#                                     Debian bookworm binary package ships
set -euo pipefail

PACKAGES=(debootstrap qemu-user gcc pkg-config libglib2.0-dev dpkg-dev xz-utils ca-certificates)
DEB_SRC_FILE=/etc/apt/sources.list.d/edgekit-deb-src.sources

if [[ $(id -u) != 0 ]]; then
  echo "setup-emulation: run as root (it installs Debian packages): sudo bash $0" >&2
  exit 1
fi
command -v apt-get >/dev/null || { echo "setup-emulation: needs a Debian/Ubuntu machine (apt-get)" >&2; exit 1; }

apt_get() { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@"; }

has_deb_src() {
  grep -rqsE '^\s*deb-src\s|^Types:.*deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null
}

# Add deb-src entries for the same mirrors and suites the machine already uses for binaries.
add_deb_src() {
  local added=0
  if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    sed -e 's/^Types:.*/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$DEB_SRC_FILE"
    added=1
  elif grep -qsE '^\s*deb\s' /etc/apt/sources.list; then
    grep -E '^\s*deb\s' /etc/apt/sources.list | sed -e 's/^\s*deb\s/deb-src /' > /etc/apt/sources.list.d/edgekit-deb-src.list
    added=1
  fi
  [[ $added == 1 ]] || { echo "setup-emulation: no Debian apt source found to mirror as deb-src" >&2; exit 1; }
  echo "setup-emulation: added deb-src entries (needed by 'apt-get source qemu')" >&2
}

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done

updated=0
if ! has_deb_src; then
  add_deb_src
  apt_get update -qq && updated=1
fi
if (( ${#missing[@]} )); then
  echo "setup-emulation: installing ${missing[*]}" >&2
  [[ $updated == 1 ]] || apt_get update -qq
  apt_get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

qemu-aarch64 -version | head -1
echo "setup-emulation: done; next: edgekit devices setup devices/<emulated profile>.yaml" >&2
