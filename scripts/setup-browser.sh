#!/usr/bin/env bash
# Install Debian's chromium for the report.html rendering test (idempotent, quiet).
#   bash scripts/setup-browser.sh
# Does nothing when /usr/bin/chromium exists. Installs only as root with apt; otherwise it prints how
# to install it and exits 0, and the rendering test skips with that reason.
set -euo pipefail

if [[ -x /usr/bin/chromium ]]; then
  exit 0
fi
if ! command -v apt-get >/dev/null || [[ $(id -u) != 0 ]]; then
  echo "setup-browser: chromium not found; run 'sudo apt-get install chromium' for the report.html rendering test" >&2
  exit 0
fi
echo "setup-browser: installing Debian's chromium" >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh machine has empty package lists: update them only when chromium is not installable yet.
if ! apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
/usr/bin/chromium --version >&2
