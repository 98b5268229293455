"""Time per layer on this machine, from onnxruntime's session profiler, float and int8 side by side.

onnxruntime (``SessionOptions.enable_profiling``) writes one JSON event per executed node per run
(``<node>_kernel_time``, with its op type and output shape). The nodes are those of the optimised graph:
a Conv with its BatchNorm and Relu becomes one ``Conv``/``FusedConv`` (or an NCHWc ``Conv``), a QDQ conv one
``QLinearConv``, the classifier a ``Gemm``/``QGemm``. Their order of execution is the forward order of the
model, so the k-th conv/FC node of a run is the model's k-th conv/FC layer (``edgekit.models.layers``, the
names the per-layer SQNR uses too); every pair is checked by the size of its output, and a graph that does
not line up is an error, never a guess. Every other node (Transpose, QuantizeLinear, ReduceMean, the NCHWc
reorders, ...) is reported by its op type.

Times are real, on this host, with the profiler on (it adds a little to each node); each node's figure is
its median over the timed runs. LiteRT's Python package (ai-edge-litert 2.3) exposes no op profiler:
``Interpreter`` takes no profiler and returns no per-op times (``benchmark_model --enable_op_profiling``
is C++ only), so LiteRT's time per kernel comes from the emulated instruction counts instead
(``edgekit.targets.qemu_symbols``).

Qualcomm's HTP simulator (onnxruntime-qnn, ``profiling_level: detailed``) reports cycles per op: the
simulator's own count for one inference, labelled simulated, never a latency. Its op names are the ONNX
node names with ``_token_N`` appended, so its convs are named by the same order matching; ops the HTP
rejects run on the CPU (fallback is allowed here, unlike the strict profiling target) and have no cycles.
Those counts do not repeat: two runs of one file on one input gave totals 3x apart on this host, so the
build does not put them in the report (``qnn_layer_cycles`` is there to look at them; docs/per-layer.md).
"""

from __future__ import annotations

import csv
import json
import math
import re
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.errors import EdgekitError

#: op types of the optimised graph that compute a conv or FC layer (float, fused, NCHWc or quantized kernels)
LAYER_OP_TYPES = ("Conv", "FusedConv", "QLinearConv", "NhwcFusedConv", "ConvInteger", "Gemm", "FusedGemm", "QGemm",
                  "MatMul", "FusedMatMul", "MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul")
DEFAULT_WARMUP = 5
DEFAULT_RUNS = 30
SOURCE = "onnxruntime session profiler (enable_profiling), median per node over the timed runs"
QNN_SOURCE = ("QNN HTP simulator (onnxruntime-qnn, profiling_level detailed): the simulator's cycles per op for one "
              "inference; simulated, not a device latency")
GRAPH_LAYER_OPS = ("Conv", "Gemm", "MatMul")  # conv/FC nodes of an exported (unoptimised) ONNX graph


class PerOpError(EdgekitError):
    """The profiled nodes cannot be matched to the model's layers."""


@dataclass(frozen=True)
class NodeTime:
    name: str  # the node of the optimised graph
    op_type: str
    output_size: int | None  # elements of its first output
    ms: float  # median over the timed runs


def ort_node_times(path: str | Path, image: np.ndarray, *, threads: int = 1, warmup: int = DEFAULT_WARMUP,
                   runs: int = DEFAULT_RUNS) -> list[NodeTime]:
    """Every node onnxruntime executes for ``path`` in one inference of ``image`` (float32 NCHW, batch 1), in
    execution order, with its median kernel time over ``runs`` profiled runs after ``warmup`` runs."""
    from edgekit.runtimes.base import get_runtime
    from edgekit.runtimes.onnxruntime_rt import open_session, session_options

    spec = get_runtime("onnxruntime").load(path, threads=threads)
    feed = {spec.input.name: spec._to_model_input(np.asarray(image, dtype=np.float32), spec.input_spec())}
    with tempfile.TemporaryDirectory(prefix="edgekit-per-op-") as folder:
        options = session_options(threads)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "ort")
        session = open_session(Path(path), options)
        for _ in range(warmup + runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    return node_times(events, skip_runs=warmup)


def node_times(events: list[dict], skip_runs: int) -> list[NodeTime]:
    """The nodes of the runs after the first ``skip_runs`` (in the first such run's order), median ms each."""
    windows = sorted((event["ts"], event["ts"] + event["dur"]) for event in events
                     if event.get("cat") == "Session" and event.get("name") == "model_run")[skip_runs:]
    durations: dict[str, list[float]] = {}
    facts: dict[str, tuple[str, int | None]] = {}
    order: list[str] = []
    for event in sorted(events, key=lambda event: event.get("ts", 0)):
        name = event.get("name", "")
        if event.get("cat") != "Node" or not name.endswith("_kernel_time"):
            continue
        if not any(start <= event["ts"] <= end for start, end in windows):
            continue
        node = name[: -len("_kernel_time")]
        if node not in durations:
            order.append(node)
            args = event.get("args", {})
            facts[node] = (args.get("op_name", ""), _output_size(args.get("output_type_shape")))
        durations.setdefault(node, []).append(event["dur"] / 1000.0)
    return [NodeTime(node, *facts[node], round(statistics.median(durations[node]), 6)) for node in order]


def _output_size(shapes) -> int | None:
    """Elements of the first output from the profiler's ``[{"float": [1, 16, 80, 80]}]``."""
    try:
        return math.prod(next(iter(shapes[0].values())))
    except (TypeError, IndexError, AttributeError, StopIteration):
        return None


def layer_times(nodes: list[NodeTime], layers: list, source: str) -> tuple[list[dict], list[dict]]:
    """(one row per layer: {layer, op, node, node_op, ms}, one row per other op type: {op_type, ms, nodes}).
    ``layers``: ``edgekit.models.layers.model_layers`` of the float model, in forward order."""
    computing = [node for node in nodes if node.op_type in LAYER_OP_TYPES]
    if len(computing) != len(layers):
        raise PerOpError(f"{source}: {len(computing)} conv/FC nodes ran in onnxruntime, the model has {len(layers)} "
                         "conv/FC layers; cannot name the profiled nodes")
    rows = []
    for position, (node, layer) in enumerate(zip(computing, layers)):
        if not _same_output(node, layer):
            raise PerOpError(f"{source}: conv/FC node #{position} ({node.name}, {node.op_type}) writes "
                             f"{node.output_size} values, layer {layer.name} {math.prod(layer.shape)}")
        rows.append({"layer": layer.name, "op": layer.op, "node": node.name, "node_op": node.op_type, "ms": node.ms})
    others: dict[str, dict] = {}
    for node in nodes:
        if node.op_type not in LAYER_OP_TYPES:
            row = others.setdefault(node.op_type, {"op_type": node.op_type, "ms": 0.0, "nodes": 0})
            row["ms"] = round(row["ms"] + node.ms, 6)
            row["nodes"] += 1
    return rows, list(others.values())


#: onnxruntime's NCHWc convs (x86) write channels padded up to the next multiple of its block (8 or 16)
NCHWC_BLOCK = 16


def _same_output(node: NodeTime, layer) -> bool:
    """Whether ``node`` writes ``layer``'s output: as many values, or, for an NCHWc conv, as many spatial
    positions with the channels padded to the block."""
    expected = math.prod(layer.shape)
    if node.output_size is None or node.output_size == expected:
        return True
    if "nchwc" not in node.name or len(layer.shape) != 3:
        return False
    channels, spatial = layer.shape[0], layer.shape[1] * layer.shape[2]
    return node.output_size % spatial == 0 and channels <= node.output_size // spatial < channels + NCHWC_BLOCK


def side_by_side(float_rows: tuple[list[dict], list[dict]], int8_rows: tuple[list[dict], list[dict]],
                 value: str = "ms") -> dict:
    """Float and int8 per layer (same layer names, same order) and per other op type, with totals; ``value``:
    the rows' figure ("ms" or "cycles"). A side that did not run (``([], [])``) has None in its column."""
    (float_layers, float_others), (int8_layers, int8_others) = float_rows, int8_rows
    float_by_layer = {row["layer"]: row for row in float_layers}
    layers = [{"layer": ours["layer"], "op": ours["op"], "float": float_by_layer.get(ours["layer"], {}).get(value),
               "int8": ours[value], "float_node_op": float_by_layer.get(ours["layer"], {}).get("node_op"),
               "int8_node_op": ours["node_op"]} for ours in int8_layers]
    float_other = {row["op_type"]: row[value] for row in float_others}
    int8_other = {row["op_type"]: row[value] for row in int8_others}
    others = [{"op_type": op, "float": float_other.get(op), "int8": int8_other.get(op)}
              for op in dict.fromkeys([*float_other, *int8_other])]

    def total(rows, other):
        return round(sum(row[value] for row in rows) + sum(other.values()), 6) if rows else None

    return {"layers": layers, "other_ops": others, "float_total": total(float_layers, float_other),
            "int8_total": total(int8_layers, int8_other)}


def profile_layer_times(float_path: Path, int8_paths: list[Path], model, image: np.ndarray, *, threads: int = 1,
                        warmup: int = DEFAULT_WARMUP, runs: int = DEFAULT_RUNS,
                        names: dict | None = None) -> list[dict]:
    """One entry per int8 .onnx: its time per layer next to its float twin's, measured on this host.
    ``names`` maps each path to the name the report gives it (default: the path)."""
    import torch

    from edgekit.models.layers import model_layers

    names = names or {}
    layers = model_layers(model, torch.from_numpy(np.asarray(image, dtype=np.float32)))

    def measure(path: Path):
        nodes = ort_node_times(path, image, threads=threads, warmup=warmup, runs=runs)
        return layer_times(nodes, layers, str(path))

    float_rows = measure(float_path)
    entries = []
    for path in int8_paths:
        entries.append({"artifact": names.get(path, str(path)),
                        "float_artifact": names.get(float_path, str(float_path)),
                        "runtime": "onnxruntime", "device": "host", "obtained": "real", "metric": "latency",
                        "unit": "ms", "threads": threads, "runs": runs, "source": SOURCE,
                        **side_by_side(float_rows, measure(path))})
    return entries


# --- Qualcomm HTP simulator: simulated cycles per op -------------------------------------------------


def qnn_node_cycles(path: str | Path, image: np.ndarray, *, backend_path: str | None = None,
                    timeout: float = 1800) -> list[NodeTime]:
    """Each op the HTP simulator ran for one inference of ``path`` (batch fixed to 1), with its simulated
    cycles in ``ms``'s place, in the profile's order; the ONNX op type where the node name says it. Runs in a
    child process: the QNN libraries print to stdout, and an EP library registers once per process."""
    with tempfile.TemporaryDirectory(prefix="edgekit-qnn-cycles-") as folder:
        image_path = Path(folder) / "image.npy"
        np.save(image_path, np.asarray(image, dtype=np.float32))
        argv = [sys.executable, "-m", "edgekit.profile.per_op", "qnn-cycles", str(path), str(image_path), folder,
                backend_path or ""]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=timeout)
        except subprocess.TimeoutExpired:
            raise PerOpError(f"{path}: the HTP simulator did not finish within {timeout:g} s") from None
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise PerOpError(f"{path}: HTP simulator profiling failed: {last[:300]}")
    return [NodeTime(name, op_type, None, cycles) for name, op_type, cycles in json.loads(lines[-1])["nodes"]]


def read_qnn_profile(csv_path: Path, op_types: dict[str, str]) -> list[tuple[str, str, int]]:
    """(node, op type, cycles) per op from QNN's profiling CSV (``NODE`` rows counted in ``CYCLES``); a node
    name is the ONNX node's with ``_token_N`` added by the EP, its op type looked up in ``op_types``."""
    nodes = []
    with open(csv_path, newline="") as file:
        for row in csv.DictReader(file):
            if row.get("Message") != "NODE" or row.get("Unit of Measurement") != "CYCLES":
                continue
            label = re.sub(r":?\s*OpId_\d+$", "", row["Event Identifier"].removesuffix(" (cycles)"))
            name = re.sub(r"_token_\d+$", "", label)
            nodes.append((name, op_types.get(name, "QNN:" + name.split("_")[0]), int(row["Time"])))
    return nodes


def _qnn_cycles_child(model_path: str, image_path: str, folder: str, backend_path: str) -> None:
    import onnx
    import onnxruntime as ort
    import onnxruntime_qnn

    from edgekit.targets.qnn import static_batch

    fixed = Path(folder) / "fixed.onnx"
    static_batch(Path(model_path), fixed)  # the HTP takes static shapes only
    model = onnx.load(str(fixed))
    op_types = {node.name: node.op_type for node in model.graph.node}
    ort.register_execution_provider_library("QNNExecutionProvider", onnxruntime_qnn.get_library_path())
    devices = [device for device in ort.get_ep_devices() if device.ep_name == "QNNExecutionProvider"]
    profile_csv = Path(folder) / "qnn_profile.csv"
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_provider_for_devices(devices, {"backend_path": backend_path or onnxruntime_qnn.get_qnn_htp_path(),
                                               "profiling_level": "detailed", "profiling_file_path": str(profile_csv)})
    session = ort.InferenceSession(str(fixed), options)
    session.run(None, {session.get_inputs()[0].name: np.load(image_path)})
    del session  # the EP writes the profile when the session ends
    print(json.dumps({"nodes": read_qnn_profile(profile_csv, op_types)}))


def qnn_layer_cycles(float_path: Path | None, int8_paths: list[Path], model, image: np.ndarray, *, device: str,
                     backend_path: str | None = None, names: dict | None = None) -> list[dict]:
    """One entry per int8 .onnx: simulated HTP cycles per layer next to its float twin's (None where the
    float model did not run on the simulator)."""
    import onnx
    import torch

    from edgekit.models.layers import model_layers

    names = names or {}
    layers = model_layers(model, torch.from_numpy(np.asarray(image, dtype=np.float32)))

    def measure(path: Path):
        graph = onnx.load(str(path)).graph
        order = [node.name for node in graph.node if node.op_type in GRAPH_LAYER_OPS]
        nodes = qnn_node_cycles(path, image, backend_path=backend_path)
        # the profile lists the HTP's ops, not onnxruntime's: its convs are the graph's Conv/Gemm nodes by name
        computing = {name: position for position, name in enumerate(order)}
        renamed = [NodeTime(node.name, "Conv" if node.name in computing else node.op_type, None, node.ms)
                   for node in nodes]
        layer_nodes = sorted((node for node in renamed if node.name in computing), key=lambda n: computing[n.name])
        others = [node for node in renamed if node.name not in computing]
        if len(layer_nodes) != len(layers):
            raise PerOpError(f"{path}: the HTP simulator profiled {len(layer_nodes)} of the graph's conv/FC nodes, "
                             f"the model has {len(layers)} conv/FC layers")
        rows = [{"layer": layer.name, "op": layer.op, "node": node.name, "node_op": "HTP", "cycles": int(node.ms)}
                for node, layer in zip(layer_nodes, layers)]
        other_rows: dict[str, dict] = {}
        for node in others:
            row = other_rows.setdefault(node.op_type, {"op_type": node.op_type, "cycles": 0, "nodes": 0})
            row["cycles"] += int(node.ms)
            row["nodes"] += 1
        return rows, list(other_rows.values())

    float_rows = ([], [])
    if float_path is not None:
        try:
            float_rows = measure(float_path)
        except PerOpError:
            pass  # a float graph the simulator cannot take: the int8 column stands alone
    return [{"artifact": names.get(path, str(path)),
             "float_artifact": names.get(float_path, str(float_path)) if float_path else None,
             "runtime": "onnxruntime-qnn", "device": device, "obtained": "simulated", "metric": "cycles",
             "unit": "cycles", "runs": 1, "source": QNN_SOURCE, **side_by_side(float_rows, measure(path), "cycles")}
            for path in int8_paths]


if __name__ == "__main__" and len(sys.argv) == 6 and sys.argv[1] == "qnn-cycles":
    _qnn_cycles_child(*sys.argv[2:])
