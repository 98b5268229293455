#!/usr/bin/env python3
"""edgekit's on-device profiler: copy this one file to a board and run it there.

    python ondevice.py MODEL [--runtime auto|onnxruntime|litert|openvino|executorch] [--threads N] [--warmup N]
        [--min-runs N] [--min-seconds T] [--max-runs N] [--inputs FILE.npz] [--per-node]
        [--provider cpu|qnn-htp|cpu-bf16|xnnpack] [--qnn-backend PATH] [--delegate auto|xnnpack|none]
        [--save-outputs FILE.npy] [--markers]
    python ondevice.py --self-check onnxruntime,litert

``--self-check RUNTIMES`` imports numpy and each listed runtime and prints one JSON line
``{"python": ..., "found": {module: version}, "missing": ["numpy (No module named 'numpy')", ...]}``;
the exit status is 0 only when nothing is missing (``edgekit devices check`` runs it on the device).

Needs Python 3, numpy and a runtime: onnxruntime (or openvino) for .onnx, ai-edge-litert (or the older
tflite-runtime) for .tflite, executorch (with torch) for .pte; nothing from edgekit. The last line of stdout is one JSON object (see edgekit's
docs/emulation.md for its fields); on failure the exit status is non-zero and stderr has one line.

Protocol: ``--warmup`` untimed runs, then timed runs until at least ``--min-runs`` runs AND at least
``--min-seconds`` have passed, never more than ``--max-runs``. ``--inputs`` takes an .npz with ``images``
(float32 NCHW, normalised; converted to the model's layout and quantised for int8/uint8 inputs) and
optional ``labels`` (then top-1/top-5 accuracy is measured over all images after the timed runs).

``--markers`` (for emulation only): each timed inference is wrapped in two marker system calls that
edgekit's qemu plugin recognises (number MARKER_SYSCALL, first argument MARKER_BEGIN / MARKER_END; a
real kernel answers ENOSYS and nothing happens). The plugin appends one instruction count per
inference to the file named by $EDGEKIT_INSN_FILE. After the timed runs the same loop runs as many
times again with no inference, so the file then holds as many counts of the harness alone (timer, list
append, marker calls); the JSON reports the median per inference less the harness median
(``instructions_per_inference``), that harness median (``harness_instructions``), and no times.
"""

import argparse
import contextlib
import ctypes
import importlib
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time

try:
    import numpy as np
except ImportError:  # --self-check reports it; a profiling run stops with one line
    np = None

MARKER_SYSCALL = 0xED6E  # far above every Linux syscall number on any architecture
MARKER_BEGIN, MARKER_END = 0x45444731, 0x45444730
INSN_FILE_ENV = "EDGEKIT_INSN_FILE"
ARM_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
             "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
             "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd40": "Neoverse-V1", "0xd41": "Cortex-A78",
             "0xd44": "Cortex-X1", "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd48": "Cortex-X2",
             "0xd49": "Neoverse-N2", "0xd4b": "Cortex-A78C", "0xd4d": "Cortex-A715", "0xd4e": "Cortex-X3"}


class Failure(Exception):
    """Ends the script with a non-zero status and this one-line message on stderr."""


class LiteRTModel:
    def __init__(self, path, threads, delegate):
        try:
            from ai_edge_litert import interpreter as litert
            self.runtime, self.runtime_version = "litert", _version("ai-edge-litert")
        except ImportError:
            from tflite_runtime import interpreter as litert
            self.runtime, self.runtime_version = "tflite_runtime", _version("tflite-runtime")
        resolver = litert.OpResolverType.AUTO
        if delegate == "none":
            resolver = litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            self.interpreter = litert.Interpreter(model_path=path, num_threads=threads,
                                                  experimental_op_resolver_type=resolver)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise Failure(f"cannot load {os.path.basename(path)}: {_one_line(exc)}") from None
        ops = {op["op_name"] for op in self.interpreter._get_ops_details()}
        self.delegate = "XNNPACK" if "DELEGATE" in ops else "none"
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def input_spec(self):
        scale, zero_point = self.input["quantization"]
        return list(self.input["shape"]), np.dtype(self.input["dtype"]), (scale, zero_point)

    def run(self, array):
        self.interpreter.set_tensor(self.input["index"], array)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"])

    def dequantize(self, output):
        scale, zero_point = self.output["quantization"]
        return (output.astype(np.float32) - zero_point) * scale if scale else output.astype(np.float32)


class OrtModel:
    def __init__(self, path, threads, provider, qnn_backend, per_node, scratch=None):
        import onnxruntime as ort
        self.runtime, self.runtime_version = "onnxruntime", ort.__version__
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 4  # errors reach the caller as the one-line message, not as log lines
        if per_node:
            options.enable_profiling = True
            options.profile_file_prefix = os.path.join(scratch, "ort")
        providers = ["CPUExecutionProvider"]
        if provider == "qnn-htp":
            providers = None
            _add_qnn_htp(ort, options, qnn_backend)
        try:
            self.session = ort.InferenceSession(path, options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for bad files and EP errors
            raise Failure(f"cannot load {os.path.basename(path)}: {_one_line(exc)}") from None
        self.delegate = self.session.get_providers()[0]
        self.input = self.session.get_inputs()[0]
        self.output_name = self.session.get_outputs()[0].name

    def input_spec(self):
        shape = [dim if isinstance(dim, int) and dim > 0 else 1 for dim in self.input.shape]
        dtypes = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}
        return shape, np.dtype(dtypes.get(self.input.type, np.float32)), (0.0, 0)

    def run(self, array):
        return self.session.run([self.output_name], {self.input.name: array})[0]

    def dequantize(self, output):
        return output.astype(np.float32)

    def per_node(self, skip_runs, runs):
        return per_node_table(self.session.end_profiling(), skip_runs, runs)


class OpenVINOModel:
    """OpenVINO's CPU plugin; ``--provider cpu`` holds float models at f32, ``cpu-bf16`` lets them run in bf16."""

    def __init__(self, path, threads, provider):
        import openvino
        self.runtime, self.runtime_version = "openvino", _version("openvino")
        precision = "bf16" if provider == "cpu-bf16" else "f32"
        config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": precision}
        try:
            compiled = openvino.Core().compile_model(path, "CPU", config)
        except Exception as exc:  # RuntimeError with pages of text
            raise Failure(f"cannot load {os.path.basename(path)}: {_one_line(exc)}") from None
        self.delegate = f"CPU ({precision})"
        self.input = compiled.inputs[0]
        self.request = compiled.create_infer_request()

    def input_spec(self):
        shape = [1 if dim.is_dynamic else dim.get_length() for dim in self.input.get_partial_shape()]
        return shape, np.dtype(self.input.get_element_type().to_dtype()), (0.0, 0)

    def run(self, array):
        self.request.infer({0: array})
        return self.request.get_output_tensor(0).data

    def dequantize(self, output):
        return output.astype(np.float32)


class ExecuTorchModel:
    """An ExecuTorch program (.pte); its XNNPACK delegate runs on the process-wide thread pool."""

    SCALAR_TYPES = {6: "float32", 1: "int8", 0: "uint8"}

    def __init__(self, path, threads):
        import torch
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime
        self.torch = torch
        self.runtime, self.runtime_version = "executorch", _version("executorch")
        portable_lib._unsafe_reset_threadpool(threads)
        try:
            self.program = Runtime.get().load_program(path)  # kept: the method runs in the program's memory
            self.method = self.program.load_method("forward")
        except Exception as exc:
            raise Failure(f"cannot load {os.path.basename(path)}: {_one_line(exc)}") from None
        self.delegate = "XNNPACK"
        self.input = self.method.metadata.input_tensor_meta(0)

    def input_spec(self):
        return list(self.input.sizes()), np.dtype(self.SCALAR_TYPES.get(int(self.input.dtype()), "float32")), (0.0, 0)

    def run(self, array):
        return self.method.execute([self.torch.from_numpy(array)])[0]

    def dequantize(self, output):
        return output.numpy().astype(np.float32)


def _add_qnn_htp(ort, options, backend):
    """Qualcomm's QNN EP as a plugin library; CPU fallback off, so any op HTP rejects is an error."""
    try:
        import onnxruntime_qnn
    except ImportError:
        raise Failure("--provider qnn-htp needs the onnxruntime-qnn package") from None
    try:
        ort.register_execution_provider_library("QNNExecutionProvider", onnxruntime_qnn.get_library_path())
    except Exception as exc:
        if "already registered" not in str(exc):
            raise Failure(f"cannot register the QNN execution provider: {_one_line(exc)}") from None
    devices = [device for device in ort.get_ep_devices() if device.ep_name == "QNNExecutionProvider"]
    if not devices:
        raise Failure("the QNN execution provider offers no device")
    options.add_provider_for_devices(devices, {"backend_path": backend or onnxruntime_qnn.get_qnn_htp_path()})
    options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")


def per_node_table(profile_path, skip_runs, runs):
    """Mean milliseconds per node over the timed runs (runs ``skip_runs`` .. ``skip_runs + runs - 1``)."""
    with open(profile_path) as file:
        events = json.load(file)
    starts = sorted((event["ts"], event["ts"] + event["dur"]) for event in events
                    if event.get("cat") == "Session" and event.get("name") == "model_run")
    windows = starts[skip_runs:skip_runs + runs]
    totals, op_types = {}, {}
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        if any(start <= event["ts"] <= end for start, end in windows):
            name = event["name"][: -len("_kernel_time")]
            totals[name] = totals.get(name, 0) + event["dur"]
            op_types[name] = event.get("args", {}).get("op_name", "")
    os.remove(profile_path)
    table = [{"name": name, "op_type": op_types[name], "ms": round(total / 1000.0 / max(len(windows), 1), 6)}
             for name, total in totals.items()]
    return sorted(table, key=lambda row: -row["ms"])


def prepare(images, spec):
    """float32 NCHW images -> the model's layout (NCHW or NHWC) and dtype (quantised with its params)."""
    shape, dtype, (scale, zero_point) = spec
    if len(shape) == 4 and shape[1] != images.shape[1] and shape[3] == images.shape[1]:
        images = images.transpose(0, 2, 3, 1)
    if dtype.kind in "iu":
        if not scale:
            raise Failure(f"the model's {dtype} input has no quantisation parameters")
        info = np.iinfo(dtype)
        scaled = images / scale  # rounded half away from zero, as runtimes/base.py and TFLite's QUANTIZE do
        images = np.clip(np.sign(scaled) * np.floor(np.abs(scaled) + 0.5) + zero_point, info.min, info.max)
    return np.ascontiguousarray(images.astype(dtype))


def random_input(spec, seed=0):
    shape, dtype, _ = spec
    rng = np.random.default_rng(seed)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max + 1, size=shape, dtype=dtype)
    return rng.standard_normal(shape).astype(dtype)


def load_inputs(path, spec):
    try:
        data = np.load(path)
        images = data["images"].astype(np.float32)
        labels = data["labels"].astype(np.int64) if "labels" in data.files else None
    except (OSError, ValueError, KeyError) as exc:
        raise Failure(f"cannot read inputs {path}: {_one_line(exc)}") from None
    return [prepare(images[i:i + 1], spec) for i in range(len(images))], labels


class Markers:
    """Marker system calls around each timed inference, counted by edgekit's qemu plugin."""

    def __init__(self, enabled):
        self.libc = ctypes.CDLL(None, use_errno=True) if enabled else None

    def begin(self):
        if self.libc:
            self.libc.syscall(ctypes.c_long(MARKER_SYSCALL), ctypes.c_long(MARKER_BEGIN))

    def end(self):
        if self.libc:
            self.libc.syscall(ctypes.c_long(MARKER_SYSCALL), ctypes.c_long(MARKER_END))


class NoInference:
    """Stands in for the model in the timed loop: what its markers then count is the harness alone."""

    def run(self, batch):
        return None


def measure(model, batch, args, markers, warmup):
    for _ in range(warmup):
        model.run(batch)
    times = []
    started = time.perf_counter()
    while len(times) < args.max_runs and (len(times) < args.min_runs or time.perf_counter() - started < args.min_seconds):
        markers.begin()
        tic = time.perf_counter()
        model.run(batch)
        times.append((time.perf_counter() - tic) * 1000.0)
        markers.end()
    return times, time.perf_counter() - started


def latency_stats(times):
    ordered = sorted(times)

    def pick(q):
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

    return {"p50": statistics.median(ordered), "p90": pick(0.9), "p99": pick(0.99), "mean": statistics.fmean(ordered),
            "std": statistics.pstdev(ordered), "min": ordered[0]}


def evaluate(model, samples, labels, save_path):
    outputs = np.concatenate([model.dequantize(model.run(sample)) for sample in samples])
    if save_path:
        np.save(save_path, outputs)
    if labels is None:
        return None
    top5 = np.argsort(-outputs, axis=1)[:, :5]
    return {"top1": float(np.mean(top5[:, 0] == labels) * 100.0),
            "top5": float(np.mean((top5 == labels[:, None]).any(axis=1)) * 100.0), "samples": int(len(labels))}


def measure_harness(batch, runs, markers, warmup):
    """The timed loop once per timed run again, with no inference (``--markers``: counts the harness)."""
    same_runs = argparse.Namespace(min_runs=runs, max_runs=runs, min_seconds=0.0)
    measure(NoInference(), batch, same_runs, markers, warmup)


def instruction_counts(runs):
    """(instructions per inference, harness instructions) from the plugin's file: the medians of the first
    ``runs`` counts (the timed inferences) less that of the rest (the empty iterations), and the latter."""
    path = os.environ.get(INSN_FILE_ENV)
    if not path or not os.path.isfile(path):
        return None, None
    with open(path) as file:
        counts = [int(line) for line in file if line.strip()]
    inferences, harness = counts[:runs], counts[runs:]
    if not inferences or not harness:
        return None, None
    harness_median = int(statistics.median(harness))
    return int(statistics.median(inferences)) - harness_median, harness_median


def host_facts(emulated=False):
    """The machine as this process sees it; None where unknown. Under qemu-user (``emulated``) the core
    count and governor would be the host's, not the emulated device's: None."""
    cpuinfo = _read("/proc/cpuinfo") or ""
    fields = dict(line.split(":", 1) for line in cpuinfo.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    cpu = fields.get("model name") or ARM_PARTS.get(fields.get("CPU part", "").lower()) or fields.get("CPU part")
    return {"machine": platform.machine(), "cpu": cpu or platform.processor() or None,
            "cores": None if emulated else os.cpu_count(),
            "governor": None if emulated else _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")}


def _read(path):
    try:
        with open(path) as file:
            return file.read().strip()
    except OSError:
        return None


def _version(distribution):
    try:
        from importlib.metadata import version
        return version(distribution)
    except Exception:
        return None


def _one_line(exc):
    return " ".join(str(exc).split())[:400] or type(exc).__name__


@contextlib.contextmanager
def scratch_directory(needed):
    """A temporary directory (for onnxruntime's profile file) removed at the end, also after a failure."""
    if not needed:
        yield None
        return
    folder = tempfile.mkdtemp(prefix="ondevice-")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def peak_rss_mb():
    # ru_maxrss is KiB on Linux (bytes on macOS)
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def load_model(args):
    if not os.path.isfile(args.model):
        raise Failure(f"cannot load {args.model}: no such file")
    runtime = args.runtime
    if runtime == "auto":
        runtime = {".tflite": "litert", ".pte": "executorch"}.get(os.path.splitext(args.model)[1], "onnxruntime")
    try:
        if runtime == "litert":
            return LiteRTModel(args.model, args.threads, args.delegate)
        if runtime == "openvino":
            return OpenVINOModel(args.model, args.threads, args.provider)
        if runtime == "executorch":
            return ExecuTorchModel(args.model, args.threads)
        return OrtModel(args.model, args.threads, args.provider, args.qnn_backend, args.per_node, args.scratch)
    except ImportError as exc:
        raise Failure(f"runtime {runtime} is not installed here ({exc.name})") from None


def profile(args):
    tic = time.perf_counter()
    model = load_model(args)
    init_ms = (time.perf_counter() - tic) * 1000.0
    spec = model.input_spec()
    samples, labels = load_inputs(args.inputs, spec) if args.inputs else ([random_input(spec)], None)
    tic = time.perf_counter()
    model.run(samples[0])
    first_ms = (time.perf_counter() - tic) * 1000.0
    warmup = max(0, args.warmup - 1)  # the first inference was one of the warm-up runs
    markers = Markers(args.markers)
    times, seconds = measure(model, samples[0], args, markers, warmup)
    if args.markers:
        measure_harness(samples[0], len(times), markers, warmup)
    per_node = None
    if args.per_node and isinstance(model, OrtModel):
        per_node = model.per_node(skip_runs=1 + warmup, runs=len(times))
    elif args.per_node:
        print("ondevice: --per-node needs onnxruntime; per_node is null", file=sys.stderr)
    accuracy = evaluate(model, samples, labels, args.save_outputs) if args.inputs else None
    wall_clock = not (args.markers or args.provider == "qnn-htp")  # emulated / simulated times are no latency
    instructions, harness_instructions = instruction_counts(len(times)) if args.markers else (None, None)
    return {
        "model": os.path.basename(args.model), "runtime": model.runtime, "runtime_version": model.runtime_version,
        "delegate": model.delegate, "threads": args.threads,
        "latency_ms": latency_stats(times) if wall_clock else None, "runs": len(times), "seconds": seconds,
        "init_ms": init_ms if wall_clock else None, "first_inference_ms": first_ms if wall_clock else None,
        # Under qemu-user or the HTP simulator, ru_maxrss is the emulator's process, not the device's.
        "peak_rss_mb": peak_rss_mb() if wall_clock else None, "host": host_facts(args.markers), "accuracy": accuracy,
        "outputs_file": args.save_outputs if args.inputs else None, "per_node": per_node,
        "instructions_per_inference": instructions, "harness_instructions": harness_instructions,
        **({"simulated_ms": latency_stats(times)} if args.provider == "qnn-htp" else {}),
    }


#: runtime -> the modules that provide it (any one is enough)
RUNTIME_MODULES = {"onnxruntime": ("onnxruntime",), "litert": ("ai_edge_litert.interpreter", "tflite_runtime.interpreter"),
                   "openvino": ("openvino",), "executorch": ("executorch.runtime",)}


def self_check(runtimes):
    """Import numpy and each runtime; {"python", "found": {module: version}, "missing": [why, ...]}."""
    found, missing = {}, []
    for name in ["numpy", *(runtime for runtime in runtimes if runtime)]:
        modules = RUNTIME_MODULES.get(name, (name,))
        errors = []
        for module in modules:
            try:
                imported = importlib.import_module(module)
            except Exception as exc:  # an ImportError, or a broken wheel failing in its own import
                errors.append(f"{module} ({_one_line(exc)})")
                continue
            found[module] = getattr(imported, "__version__", None) or _version(module.split(".")[0].replace("_", "-"))
            break
        else:
            missing.append(" or ".join(errors))
    return {"python": platform.python_version(), "machine": platform.machine(), "found": found, "missing": missing}


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Profile one model with the runtime on this device.")
    parser.add_argument("model", nargs="?")
    parser.add_argument("--self-check", metavar="RUNTIMES",
                        help="comma-separated runtimes: import numpy and them, print what is missing, run nothing")
    parser.add_argument("--runtime", choices=["auto", "onnxruntime", "litert", "openvino", "executorch"], default="auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--min-runs", type=int, default=100)
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--max-runs", type=int, default=100000)
    parser.add_argument("--inputs", help=".npz with float32 NCHW 'images' and optional 'labels'")
    parser.add_argument("--save-outputs", help="with --inputs: save the float outputs (N, classes) to this .npy")
    parser.add_argument("--per-node", action="store_true", help="per-node latency table (onnxruntime)")
    parser.add_argument("--provider", choices=["cpu", "qnn-htp", "cpu-bf16", "xnnpack"], default="cpu",
                        help="onnxruntime: cpu, qnn-htp; openvino: cpu (float at f32), cpu-bf16; executorch: xnnpack")
    parser.add_argument("--qnn-backend", help="libQnnHtp.so (default: the one in onnxruntime-qnn)")
    parser.add_argument("--delegate", choices=["auto", "xnnpack", "none"], default="auto", help="LiteRT delegate")
    parser.add_argument("--markers", action="store_true", help="marker syscalls for edgekit's qemu plugin")
    args = parser.parse_args(argv)
    if args.self_check is None and args.model is None:
        parser.error("MODEL is required (or --self-check RUNTIMES)")
    if args.threads < 1 or args.min_runs < 1 or args.max_runs < 1 or args.warmup < 0 or args.min_seconds < 0:
        parser.error("--threads, --min-runs, --max-runs must be >= 1; --warmup, --min-seconds >= 0")
    args.max_runs = max(args.max_runs, 1)
    args.min_runs = min(args.min_runs, args.max_runs)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.self_check is not None:
        report = self_check(args.self_check.split(","))
        print(json.dumps(report))
        if report["missing"]:
            print(f"ondevice: missing: {'; '.join(report['missing'])}", file=sys.stderr)
        return 1 if report["missing"] else 0
    if np is None:
        print("ondevice: numpy is not installed (run --self-check to see what else is missing)", file=sys.stderr)
        return 1
    try:
        with scratch_directory(args.per_node) as args.scratch:
            result = profile(args)
    except Failure as exc:
        print(f"ondevice: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # one line, never a traceback: the caller parses stderr
        print(f"ondevice: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        return 1
    sys.stdout.flush()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
