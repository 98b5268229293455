#!/usr/bin/env bash
# Install edgekit and what it needs into .venv (idempotent; a second run takes seconds).
#   bash scripts/setup.sh         # the tool
#   bash scripts/setup.sh --dev   # the tool + test dependencies
# Versions are pinned by requirements.lock (a pip constraints file); torch is the CPU build 2.13.0.
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
[[ "${1:-}" == "--dev" ]] && extras="[dev]"

# The default dataset: Debian's dataset-fashion-mnist (the IDX files in /usr/share/datasets/fashion-mnist).
if [[ ! -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]]; then
  if command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
    echo "setup: installing Debian's dataset-fashion-mnist" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "setup: warning: Fashion-MNIST not found; run 'sudo apt-get install dataset-fashion-mnist' or set data.root in the recipe" >&2
  fi
fi

python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
[[ -x .venv/bin/python ]] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -c requirements.lock -e ".$extras"
.venv/bin/python -c "import edgekit, torch; print(f'setup: edgekit {edgekit.__version__}, torch {torch.__version__} in .venv')"
# NNCF compiles its CPU quantizer extension on first use (~35 s once, cached in ~/.cache/torch_extensions).
NNCF_EXTENSION_LOAD_TIMEOUT=0 .venv/bin/python -c "import nncf.torch; nncf.torch.force_build_cpu_extensions()" \
  >/dev/null 2>&1 || echo "setup: warning: NNCF's CPU extension did not build; the nncf backend will try again on first use" >&2

# The default recipe also profiles on an emulated Cortex-A76: qemu-user + an aarch64 sysroot (~1 min once).
if [[ $(id -u) == 0 ]]; then
  bash scripts/setup-emulation.sh
  .venv/bin/edgekit devices setup devices/arm64-cortex-a76-emulated.yaml
else
  echo "setup: not root: skipping the emulated ARM set-up (sudo bash scripts/setup-emulation.sh)" >&2
fi

if [[ -n "$extras" ]]; then
  # timm, to test the timm weights import against timm's own MobileNet v1: without its dependencies, because
  # the only torchvision for torch 2.13 is a CUDA build (tests/models/test_import_timm.py says how it runs)
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -c requirements.lock timm
  bash scripts/setup-ssh.sh        # the ssh target's tests start their own sshd on 127.0.0.1
  bash scripts/setup-browser.sh    # report.html is rendered in headless Chromium by a test
  bash scripts/setup-qnn.sh        # Qualcomm HTP simulator for the qnn-htp target's tests
  if [[ $(id -u) == 0 ]]; then     # the other emulated cores' CPU descriptions: their tests run, not skip
    .venv/bin/edgekit devices setup devices/arm64-cortex-a72-emulated.yaml
    .venv/bin/edgekit devices setup devices/arm64-neoverse-n1-emulated.yaml
  fi
fi
