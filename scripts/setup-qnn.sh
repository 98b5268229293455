#!/usr/bin/env bash
# Install Qualcomm's QNN execution provider for onnxruntime into .venv (idempotent).
#   bash scripts/setup-qnn.sh
# onnxruntime-qnn is a plugin EP next to the standard onnxruntime wheel (it needs onnxruntime>=1.24.2);
# its Linux x86_64 wheel ships libQnnHtp.so with an x86 simulator of the Hexagon NPU (HTP), so the
# qnn-htp target runs here without a phone. The project's onnxruntime pin is kept (constraints file).
set -euo pipefail
cd "$(dirname "$0")/.."

QNN_VERSION=2.7.0
python=.venv/bin/python
[[ -x $python ]] || { echo "setup-qnn: .venv missing; run 'bash scripts/setup.sh' first" >&2; exit 1; }

installed=$($python -c "import importlib.metadata as m; print(m.version('onnxruntime-qnn'))" 2>/dev/null || true)
if [[ $installed != "$QNN_VERSION" ]]; then
  echo "setup-qnn: installing onnxruntime-qnn==$QNN_VERSION (~100 MB)" >&2
  constraints=()
  [[ -f requirements.lock ]] && constraints=(-c requirements.lock)
  $python -m pip install -q --disable-pip-version-check "${constraints[@]}" "onnxruntime-qnn==$QNN_VERSION"
fi

$python - <<'PY'
import onnxruntime, onnxruntime_qnn
from pathlib import Path
htp = Path(onnxruntime_qnn.get_qnn_htp_path())
if not htp.is_file():
    raise SystemExit(f"setup-qnn: {htp} missing from the onnxruntime-qnn wheel")
print(f"setup-qnn: onnxruntime {onnxruntime.__version__} + onnxruntime-qnn {onnxruntime_qnn.__version__}, "
      f"HTP backend {htp.name} (x86 simulator)")
PY
