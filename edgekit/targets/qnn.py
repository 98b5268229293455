"""Qualcomm's Hexagon NPU (HTP), simulated on this machine by the onnxruntime-qnn plugin EP.

The onnxruntime-qnn wheel ships ``libQnnHtp.so`` with an x86 simulator of the HTP: an ONNX model runs
here as it would be partitioned, quantised and compiled for a Snapdragon NPU. Strict mode (CPU
fallback off) makes any node the NPU rejects an error instead of a silent CPU fallback; the target
then names those nodes. Simulator wall time is no device latency: the on-device script reports it as
``simulated_ms`` and ``latency_ms`` stays null.

``check`` answers the questions an NPU port asks, in a subprocess (the QNN libraries print to stdout
and the EP is registered once per process): op coverage (nodes HTP takes with fallback allowed),
strict-mode compile, output agreement with the CPU EP, and the ahead-of-time EP-context model for the
profile's ``htp_arch`` / ``soc_model``.

The HTP compiles static shapes only, and edgekit's ONNX files have a dynamic batch: ``put`` and ``check``
pin it to 1 in a copy (``static_batch``), so a build's own files go through as they are.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from pydantic import Field, StrictInt

from edgekit.targets.base import Capabilities, CommandResult, TargetError, TargetSettings
from edgekit.targets.local import LocalTarget, run_process

EP_NAME = "QNNExecutionProvider"
MIN_ONNXRUNTIME = (1, 24, 2)
SETUP_HINT = "run `bash scripts/setup-qnn.sh` (pip installs onnxruntime-qnn==2.7.0 into .venv)"
CPU_FALLBACK_ERROR = "assigned to the default CPU EP, but fallback to CPU EP has been explicitly disabled"
PYTHON_NAMES = {"python", "python3"}


class QnnUnsupportedOps(TargetError):
    """Strict mode: the HTP rejected some nodes (listed in the message and in ``nodes``)."""

    def __init__(self, model: str, nodes: list[dict], total: int | None):
        self.nodes = nodes
        listed = ", ".join(f"{node['op_type']} ({node['name']})" for node in nodes[:12])
        more = f" and {len(nodes) - 12} more" if len(nodes) > 12 else ""
        of_total = f" of {total}" if total else ""
        super().__init__(f"{model}: the HTP rejects {len(nodes)}{of_total} nodes in strict mode: {listed}{more}",
                         hint="change or remove these ops (see docs/qnn.md); CPU fallback is off on purpose")


class QnnHtpSettings(TargetSettings):
    htp_arch: StrictInt = Field(75, ge=68, le=99, description="Hexagon HTP architecture version (e.g. 75 for Snapdragon 8 Gen 3).")
    soc_model: StrictInt = Field(57, ge=0, le=10_000, description="QNN SoC model id (e.g. 57 for Snapdragon 8 Gen 3).")
    backend_path: Optional[str] = Field(None, description="libQnnHtp.so to use (default: the one shipped in onnxruntime-qnn).")


class QnnHtpTarget(LocalTarget):
    """Runs on this machine; the on-device script's ``--provider qnn-htp`` goes through the HTP simulator."""

    kind = "qnn-htp"
    settings_model = QnnHtpSettings
    capabilities = Capabilities(runtimes={"onnxruntime": ("qnn-htp", "cpu")}, measures="simulated")

    def __init__(self, profile):
        super().__init__(profile)
        settings = profile.qnn_htp
        self.htp_arch, self.soc_model = settings.htp_arch, settings.soc_model
        self.backend_path = settings.backend_path

    def available(self) -> tuple[bool, str]:
        try:
            import onnxruntime
            import onnxruntime_qnn
        except ImportError as exc:
            return False, f"{exc.name} is not installed; {SETUP_HINT}"
        version = tuple(int(part) for part in onnxruntime.__version__.split(".")[:3] if part.isdigit())
        if version < MIN_ONNXRUNTIME:
            return False, f"onnxruntime {onnxruntime.__version__} is too old for onnxruntime-qnn (needs >= 1.24.2)"
        backend = Path(self.backend_path or onnxruntime_qnn.get_qnn_htp_path()).expanduser()
        if not backend.is_file():
            return False, f"HTP backend {backend} not found; {SETUP_HINT}"
        return True, ""

    def run(self, argv: list[str], *, timeout: float) -> CommandResult:
        program, *args = argv
        program = self.python if program in PYTHON_NAMES else program
        if "qnn-htp" in args and self.backend_path and "--qnn-backend" not in args:
            args = [*args, "--qnn-backend", str(Path(self.backend_path).expanduser())]
        result = run_process([program, *args], timeout=timeout, device=self.name, cwd=self.workdir)
        model = _model_argument(args)
        if result.returncode != 0 and CPU_FALLBACK_ERROR in result.stderr and model:
            self.check(self.workdir / model, timeout=timeout, coverage_only=True)  # raises naming the rejected nodes
        return result

    def put(self, local: Path, remote_name: str) -> str:
        """A dynamic-batch .onnx lands with its batch pinned to 1, the only shape the HTP compiles."""
        if Path(local).suffix != ".onnx":
            return super().put(local, remote_name)
        destination = self._path(remote_name)
        try:
            static_batch(Path(local), destination)
        except OSError as exc:
            raise TargetError(f"{self.name}: cannot copy {local} to the work directory: {exc.strerror or exc}") from None
        return str(destination)

    def check(self, model: Path, *, inputs: Path | None = None, context_out: Path | None = None,
              timeout: float = 900.0, coverage_only: bool = False) -> dict:
        """Coverage, strict compile, agreement with the CPU EP, EP-context model; QnnUnsupportedOps if rejected."""
        argv = [sys.executable, "-m", "edgekit.targets.qnn", str(model), "--htp-arch", str(self.htp_arch),
                "--soc-model", str(self.soc_model)]
        argv += ["--backend", str(Path(self.backend_path).expanduser())] if self.backend_path else []
        argv += ["--inputs", str(inputs)] if inputs else []
        argv += ["--context-out", str(context_out)] if context_out and not coverage_only else []
        argv += ["--coverage-only"] if coverage_only else []
        result = run_process(argv, timeout=timeout, device=self.name, what="QNN HTP check")
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        if result.returncode != 0 or not lines:
            raise TargetError(f"{self.name}: QNN HTP check of {Path(model).name} failed: "
                              f"{(result.stderr.strip().splitlines() or ['no output'])[-1][:400]}")
        report = json.loads(lines[-1])
        unsupported = report["coverage"]["unsupported"]
        if unsupported:
            raise QnnUnsupportedOps(Path(model).name, unsupported, report["coverage"]["nodes"])
        if not coverage_only and report["strict"]["error"]:
            raise TargetError(f"{Path(model).name}: QNN could not compile the graph for the HTP: {report['strict']['error']}")
        return report

    def describe(self) -> dict:
        return {**super().describe(), "htp_arch": self.htp_arch, "soc_model": self.soc_model,
                "measures": "HTP simulator on this machine (simulated_ms is simulator wall time, not a latency)"}


def _model_argument(args: list[str]) -> str | None:
    """The MODEL argument of ``ondevice.py MODEL ...``."""
    if len(args) >= 2 and Path(args[0]).name == "ondevice.py":
        return args[1]
    return None


def static_batch(source: Path, destination: Path, batch: int = 1) -> bool:
    """Copy ``source`` to ``destination`` with every symbolic input dimension fixed to ``batch`` (and the
    output shapes inferred again); False when it had none, and the copy is the same bytes."""
    import onnx
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_dim_param_fixed

    model = onnx.load(str(source))
    symbols = {dim.dim_param for value in model.graph.input for dim in value.type.tensor_type.shape.dim
               if dim.dim_param}
    if not symbols:
        if Path(source).resolve() != Path(destination).resolve():
            shutil.copyfile(source, destination)
        return False
    for symbol in sorted(symbols):
        make_dim_param_fixed(model.graph, symbol, batch)
    fix_output_shapes(model)
    onnx.save(model, str(destination))
    return True


# ---- the check itself: runs in a subprocess (`python -m edgekit.targets.qnn MODEL ...`) ----

def _session(ort, model: str, backend: str, *, strict: bool, record: bool = False, context_out: str | None = None,
             provider_options: dict | None = None):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if strict:
        options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    if record:
        options.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
    if context_out:
        for key, value in (("ep.context_enable", "1"), ("ep.context_file_path", context_out), ("ep.context_embed_mode", "1")):
            options.add_session_config_entry(key, value)
    devices = [device for device in ort.get_ep_devices() if device.ep_name == EP_NAME]
    options.add_provider_for_devices(devices, {"backend_path": backend, **(provider_options or {})})
    return ort.InferenceSession(model, options)


def coverage(ort, model: str, backend: str) -> dict:
    """Which nodes the HTP takes when CPU fallback is allowed (graph I/O quantisation kept on the HTP)."""
    try:
        session = _session(ort, model, backend, strict=False, record=True,
                           provider_options={"offload_graph_io_quantization": "0"})
    except Exception as exc:
        return {"nodes": None, "on_htp": None, "fraction": None, "unsupported": [], "error": _one_line(exc)}
    placed = [(subgraph.ep_name, node) for subgraph in session.get_provider_graph_assignment_info()
              for node in subgraph.get_nodes()]
    on_htp = [node for ep, node in placed if ep == EP_NAME]
    rejected = [{"name": node.name, "op_type": node.op_type} for ep, node in placed if ep != EP_NAME]
    return {"nodes": len(placed), "on_htp": len(on_htp), "fraction": len(on_htp) / max(len(placed), 1),
            "op_types": sorted({node.op_type for node in on_htp}), "unsupported": rejected, "error": None}


def agreement(ort, model: str, session, images) -> dict:
    """Top-1 agreement and largest output difference of the HTP run against onnxruntime's CPU EP."""
    import numpy as np

    cpu = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = cpu.get_inputs()[0].name
    cpu_out, htp_out, seconds = [], [], []
    for index in range(len(images)):
        sample = images[index:index + 1]
        cpu_out.append(cpu.run(None, {name: sample})[0])
        tic = time.perf_counter()
        htp_out.append(session.run(None, {name: sample})[0])
        seconds.append(time.perf_counter() - tic)
    cpu_out, htp_out = np.concatenate(cpu_out), np.concatenate(htp_out)
    return {"samples": len(images), "top1_agreement": float(np.mean(cpu_out.argmax(1) == htp_out.argmax(1))),
            "max_abs_diff": float(np.max(np.abs(cpu_out - htp_out))),
            "simulator_wall_ms_median": float(np.median(seconds) * 1000.0)}


def context_binary(ort, model: str, backend: str, out: str, htp_arch: int, soc_model: int, sample) -> dict:
    """Compile ahead of time for (htp_arch, soc_model) into an EP-context model; reload it and run once."""
    _session(ort, model, backend, strict=True, context_out=out,
             provider_options={"htp_arch": str(htp_arch), "soc_model": str(soc_model)})
    reloaded = _session(ort, out, backend, strict=True)
    output = reloaded.run(None, {reloaded.get_inputs()[0].name: sample})[0]
    return {"path": out, "bytes": Path(out).stat().st_size, "htp_arch": htp_arch, "soc_model": soc_model,
            "reloads": True, "output_shape": list(output.shape)}


def _inputs(session, path: str | None, count: int = 8):
    import numpy as np

    if path:
        return np.load(path)["images"].astype(np.float32)
    shape = [dim if isinstance(dim, int) and dim > 0 else 1 for dim in session.get_inputs()[0].shape]
    return np.random.default_rng(0).standard_normal([count, *shape[1:]]).astype(np.float32)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:400]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgekit.targets.qnn", description="QNN HTP check of one ONNX model")
    parser.add_argument("model")
    parser.add_argument("--htp-arch", type=int, default=75)
    parser.add_argument("--soc-model", type=int, default=57)
    parser.add_argument("--backend")
    parser.add_argument("--inputs", help=".npz with float32 NCHW 'images'")
    parser.add_argument("--context-out", help="write the EP-context model here")
    parser.add_argument("--coverage-only", action="store_true")
    args = parser.parse_args(argv)
    import onnxruntime as ort
    import onnxruntime_qnn

    backend = args.backend or onnxruntime_qnn.get_qnn_htp_path()
    ort.register_execution_provider_library(EP_NAME, onnxruntime_qnn.get_library_path())
    with tempfile.TemporaryDirectory(prefix="edgekit-qnn-") as folder:
        model = Path(folder) / "batch1.onnx"
        pinned = static_batch(Path(args.model), model)
        model = str(model if pinned else args.model)
        report = {"model": Path(args.model).name, "simulated": True, "batch_pinned_to_1": pinned,
                  "coverage": coverage(ort, model, backend), "strict": {"ok": False, "error": None},
                  "agreement": None, "context": None}
        if not args.coverage_only and not report["coverage"]["unsupported"]:
            try:
                session = _session(ort, model, backend, strict=True)
                report["strict"]["ok"] = True
            except Exception as exc:
                report["strict"]["error"] = _one_line(exc)
            if report["strict"]["ok"]:
                images = _inputs(session, args.inputs)
                report["agreement"] = agreement(ort, model, session, images)
                if args.context_out:
                    report["context"] = context_binary(ort, model, backend, args.context_out, args.htp_arch,
                                                       args.soc_model, images[:1])
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
