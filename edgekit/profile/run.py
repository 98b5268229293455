"""Profile exported artifacts on a device: push the on-device script and the models, run, collect JSON.

Every int8 artifact is measured next to its float twin on the same target in the same session,
interleaved round by round (float, int8, float, int8, ...), so that both see the same machine state;
each artifact's p50 is the median of its rounds' p50s and ``spread_pct`` says how far the rounds lie apart.
Each entry holds one typed measurement (metric, unit, value, distribution, obtained: real, emulated,
simulated, estimated): latency on real devices, instructions per inference under emulation, the simulator's wall
time (not a device latency) on simulators, a compiler's estimate (cycles) on targets that estimate.

A target that estimates (``capabilities.measures == "estimated"``) prints, in the script's JSON, an
``estimate``: {supported, reason, headline {metric, unit, value}, estimates (typed measurements), per_layer
(rows naming the runtime's output ``tensor``), cpu_ops, caveat, config, files (name in the work directory ->
what it is)}. Its per-layer rows get the model's layer names when ``layers`` is given, and its files are
fetched into ``keep_dir``.
"""

from __future__ import annotations

import json
import re
import signal
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

from edgekit.errors import UserInputError
from edgekit.formats import format_for_path
from edgekit.profile.devices import DeviceProfile
from edgekit.report.schema import measurement
from edgekit.targets import Target, TargetError, TargetUnavailable, make_target
from edgekit.targets.local import last_line

ONDEVICE_SCRIPT = Path(__file__).with_name("ondevice.py")
REPLICATION_LIMIT_PCT = 5.0  # MLPerf Mobile: results must replicate within 5%
DISTRIBUTION_KEYS = ("p50", "p90", "p99", "mean", "std")
RATIO_METRICS = ("latency", "instructions", "cycles")  # device costs: an int8/float ratio of them means something


@dataclass
class Group:
    """Artifacts measured together, interleaved: the first is the float twin (if any), then the int8 files."""

    runtime: str
    members: list[Path]
    float_path: Optional[Path] = None
    remote: dict[Path, str] = field(default_factory=dict)


def profile_artifacts(artifact_paths: list[Path], device_profile: DeviceProfile, *,
                      float_twins: dict[str, Path] | None = None, threads: int | list[int] | None = None,
                      inputs_npz: Path | None = None, log: Callable[[str], None] = print,
                      layers: list | None = None, keep_dir: Path | None = None) -> list[dict]:
    """Measure each artifact (and each int8 artifact's float twin) on ``device_profile``; one entry each
    per runtime delegate and thread count. ``float_twins`` maps an int8 artifact (its path as given, or
    its file name) to its float model. ``layers`` (edgekit.models.layers.model_layers of the model) names
    the rows of a per-layer estimate; files a target produces are kept under ``keep_dir``/device."""
    from edgekit.train.progress import progress_bar  # here: the edgekit.train package imports torch

    profile = device_profile
    groups = _groups_for_device(plan_groups(artifact_paths, float_twins or {}), profile, log)
    thread_counts = _thread_counts(threads, profile)
    if not groups:
        return []
    if not ONDEVICE_SCRIPT.is_file():
        raise TargetUnavailable(f"the on-device profiling script {ONDEVICE_SCRIPT} is missing")
    jobs = [(group, delegate, count) for count in thread_counts for group in groups
            for delegate in getattr(profile.delegates, group.runtime)]
    entries: list[dict] = []
    with make_target(profile) as target:
        script_remote = target.put(ONDEVICE_SCRIPT, "ondevice.py")
        inputs_remote = target.put(Path(inputs_npz), "inputs.npz") if inputs_npz else None
        _push_models(target, groups)
        total = sum(len(group.members) for group, _, _ in jobs) * profile.protocol.rounds
        with progress_bar(total=total, desc=f"profile on {profile.name}", unit="run") as bar:
            runner = _Runner(target, profile, script_remote, inputs_remote, bar, keep_dir)
            for group, delegate, count in jobs:
                measured = _measure_group(runner, group, delegate, count)
                if layers:
                    _name_estimated_layers(measured, layers)
                _log_group(measured, log)
                entries += measured
    return entries


def plan_groups(artifact_paths: list[Path], float_twins: dict[str, Path]) -> list[Group]:
    """Group each int8 artifact with its float twin, keeping the order in which artifacts were given."""
    groups: dict[Path, Group] = {}
    for path in map(Path, artifact_paths):
        twin = _twin_of(path, float_twins)
        anchor = twin or path
        group = groups.get(anchor.resolve())
        if group is None:
            group = groups[anchor.resolve()] = Group(_runtime_of(anchor), [anchor])
        if twin is not None:
            group.float_path = group.members[0]
            if _runtime_of(path) != group.runtime:
                raise UserInputError(f"{path}: its float twin {twin} is for another runtime ({group.runtime})")
        if all(member.resolve() != path.resolve() for member in group.members):
            group.members.append(path)
    return list(groups.values())


def _twin_of(path: Path, float_twins: dict[str, Path]) -> Optional[Path]:
    twin = float_twins.get(str(path), float_twins.get(path.name))
    if twin is None or Path(twin).resolve() == path.resolve():
        return None
    return Path(twin)


def _runtime_of(path: Path) -> str:
    if not path.is_file():
        raise UserInputError(f"{path}: artifact not found")
    return format_for_path(path).runtime


def _groups_for_device(groups: list[Group], profile: DeviceProfile, log) -> list[Group]:
    """Each group once per runtime of its format that the device runs (an .onnx in onnxruntime and OpenVINO)."""
    measured = []
    for group in groups:
        loaders = format_for_path(group.members[0]).runtimes
        runtimes = [runtime for runtime in loaders if runtime in profile.runtimes]
        if not runtimes:
            log(f"skipping {', '.join(path.name for path in group.members)}: device {profile.name} does not run "
                f"{' or '.join(loaders)} (its runtimes: {', '.join(profile.runtimes)})")
        measured += [replace(group, runtime=runtime) for runtime in runtimes]
    return measured


def _thread_counts(threads: int | list[int] | None, profile: DeviceProfile) -> list[int]:
    counts = [threads] if isinstance(threads, int) else list(threads or profile.threads)
    if any(count < 1 for count in counts):
        raise UserInputError(f"--threads must be 1 or more, got {counts}")
    return counts


def _push_models(target: Target, groups: list[Group]) -> None:
    index = 0
    for group in groups:
        for path in group.members:
            if path in group.remote:  # the same files measured in another runtime
                continue
            group.remote[path] = target.put(path, f"{index}-{re.sub(r'[^A-Za-z0-9._+-]', '_', path.name)}")
            index += 1


class _Runner:
    """Runs the on-device script once per call and counts the runs (their order proves the interleaving)."""

    def __init__(self, target: Target, profile: DeviceProfile, script: str, inputs: Optional[str], bar,
                 keep_dir: Optional[Path] = None):
        self.target, self.profile, self.script, self.inputs, self.bar = target, profile, script, inputs, bar
        self.keep_dir = keep_dir
        self.python = getattr(target, "python", None) or "python3"
        self.order = 0

    def run(self, model_remote: str, artifact: Path, runtime: str, delegate: str, threads: int) -> dict:
        argv = [self.python, self.script, model_remote, *self._options(runtime, delegate, threads)]
        result = self.target.run(argv, timeout=self.profile.protocol.timeout_seconds)
        if result.returncode != 0:
            raise TargetError(f"{self.profile.name}: {runtime} failed on {artifact.name} "
                              f"({_exit_reason(result.returncode)}): {last_line(result.stderr) or 'no message'}")
        output = _parse_last_json_line(result.stdout, self.profile.name, artifact)
        if output.get("estimate"):
            output["estimate"]["files"] = self._keep(output["estimate"].get("files") or {}, artifact)
        output["kernels"] = getattr(self.target, "last_kernels", None)  # emulated: instructions per function
        output["order"] = self.order
        self.order += 1
        self.bar.update(1)
        return output

    def _keep(self, files: dict, artifact: Path) -> dict:
        """Fetch the files a target produced for ``artifact`` into keep_dir/<device>/; {what: local path}."""
        if self.keep_dir is None:
            return {}
        folder = Path(self.keep_dir) / re.sub(r"[^A-Za-z0-9._+-]", "_", self.profile.name)
        folder.mkdir(parents=True, exist_ok=True)
        kept = {}
        for what, remote_name in files.items():
            local = folder / f"{artifact.stem}.{what}{Path(remote_name).suffix}"
            kept[what] = str(self.target.get(remote_name, local))
        return kept

    def _options(self, runtime: str, delegate: str, threads: int) -> list[str]:
        protocol = self.profile.protocol
        options = ["--runtime", runtime, "--threads", str(threads), "--warmup", str(protocol.warmup_runs),
                   "--min-runs", str(protocol.min_runs), "--min-seconds", f"{protocol.min_seconds:g}"]
        if protocol.max_runs:
            options += ["--max-runs", str(protocol.max_runs)]
        if self.inputs:
            options += ["--inputs", self.inputs]
        if runtime == "litert":
            options += ["--delegate", delegate]
        else:
            options += ["--provider", delegate]
        if self.target.emulated:
            options.append("--markers")
        return options


def _measure_group(runner: _Runner, group: Group, delegate: str, threads: int) -> list[dict]:
    rounds: dict[Path, list[dict]] = {path: [] for path in group.members}
    for _ in range(runner.profile.protocol.rounds):
        for path in group.members:
            rounds[path].append(runner.run(group.remote[path], path, group.runtime, delegate, threads))
    target = runner.target
    entries = {path: _summarise(path, outputs, runner.profile, target, delegate, threads)
               for path, outputs in rounds.items()}
    if group.float_path is not None:
        float_entry = entries[group.float_path]
        for path in group.members[1:]:
            entries[path]["float_artifact"] = str(group.float_path)
            entries[path]["ratio_to_float"] = _ratio(entries[path], float_entry)
    return list(entries.values())


def _summarise(artifact: Path, outputs: list[dict], profile: DeviceProfile, target: Target,
              delegate: str, threads: int) -> dict:
    """One report entry from the JSON of each round of one artifact: the typed measurement
    (metric, unit, value, distribution, obtained) and the context it was measured in."""
    first = outputs[0]
    typed = _measurement(outputs, _obtained(target))
    notes = [out["latency_note"] for out in outputs if out.get("latency_note")]
    return {
        "artifact": str(artifact), "device": profile.name, "kind": profile.kind, "cpu": profile.cpu,
        "runtime": first.get("runtime"), "runtime_version": first.get("runtime_version"),
        "delegate": delegate, "delegate_applied": first.get("delegate") or first.get("provider"), "threads": threads,
        **typed, **({"note": notes[0]} if notes else {}),
        "harness_instructions": _median([out.get("harness_instructions") for out in outputs]),  # subtracted already
        "spread_pct": _spread_pct([_round_value(out, typed["obtained"]) for out in outputs]),
        "rounds": [_round_summary(out, typed["obtained"]) for out in outputs],
        "runs": sum(out.get("runs") or 0 for out in outputs),
        "seconds": round(sum(out.get("seconds") or 0.0 for out in outputs), 3),
        "init_ms": _median([out.get("init_ms") for out in outputs]),
        "first_inference_ms": _median([out.get("first_inference_ms") for out in outputs]),
        "peak_rss_mb": max((out["peak_rss_mb"] for out in outputs if out.get("peak_rss_mb") is not None), default=None),
        "host": first.get("host"), "accuracy": first.get("accuracy"), "per_node": first.get("per_node"),
        "kernels": outputs[-1].get("kernels"),
        "float_artifact": None, "ratio_to_float": None,
        "protocol": profile.protocol.model_dump(), "target": target.describe(),
        **({"estimate": _estimate_of(outputs[-1])} if first.get("estimate") else {}),
    }


def _estimate_of(output: dict) -> dict:
    """A compiler's estimate as the report keeps it: everything but the headline, which is the entry's value."""
    return {key: value for key, value in output["estimate"].items() if key != "headline"}


def _name_estimated_layers(entries: list[dict], layers: list) -> None:
    """Give each per-layer row of an estimate the model's layer name of its runtime tensor (None for ops that are
    no conv/FC layer of the model, such as a MEAN)."""
    from edgekit.runtimes.per_layer import layer_names_by_tensor

    for entry in entries:
        rows = (entry.get("estimate") or {}).get("per_layer")
        if not rows:
            continue
        names = layer_names_by_tensor(entry["artifact"], layers)
        for row in rows:
            row["layer"] = names.get(row["tensor"])


def _obtained(target: Target) -> str:
    return "emulated" if target.emulated else "simulated" if target.simulated else target.capabilities.measures


def _measurement(outputs: list[dict], obtained: str) -> dict:
    """Instructions per inference under emulation, the simulator's wall time on a simulator (no device
    latency), the latency on a real device; each round's figures are combined by their median."""
    if obtained == "emulated":
        value = _median([out.get("instructions_per_inference") for out in outputs])
        return measurement("instructions", "instructions", value, None, obtained)
    if obtained == "estimated":
        headline = outputs[0]["estimate"]["headline"]
        value = _median([out["estimate"]["headline"]["value"] for out in outputs])
        return measurement(headline["metric"], headline["unit"], value, None, obtained)
    source = "simulated_ms" if obtained == "simulated" else "latency_ms"
    distribution = _median_distribution([out.get(source) for out in outputs])
    metric = "simulator_wall_time" if obtained == "simulated" else "latency"
    return measurement(metric, "ms", distribution and distribution["p50"], distribution, obtained)


def _round_value(output: dict, obtained: str) -> Optional[float]:
    """One round's headline figure, in the entry's unit."""
    if obtained == "emulated":
        return output.get("instructions_per_inference")
    if obtained == "estimated":
        return output["estimate"]["headline"]["value"]
    return (output.get("simulated_ms" if obtained == "simulated" else "latency_ms") or {}).get("p50")


def _round_summary(output: dict, obtained: str) -> dict:
    return {"order": output["order"], "value": _round_value(output, obtained), "runs": output.get("runs"),
            "seconds": output.get("seconds")}


def _median_distribution(distributions: list[Optional[dict]]) -> Optional[dict]:
    """The median of each statistic over the rounds (min: the smallest); None when a round has none."""
    if not distributions or not all(distributions):
        return None
    summary = {key: _median([one.get(key) for one in distributions]) for key in DISTRIBUTION_KEYS}
    summary["min"] = min((one["min"] for one in distributions if one.get("min") is not None), default=None)
    return summary


def _ratio(entry: dict, float_entry: dict) -> Optional[float]:
    """int8 / float value of the same metric; None for a simulator's wall time, which is no device cost."""
    if entry["metric"] != float_entry["metric"] or entry["metric"] not in RATIO_METRICS:
        return None
    int8_cost, float_cost = entry["value"], float_entry["value"]
    return round(int8_cost / float_cost, 4) if int8_cost and float_cost else None


def _median(values: list) -> Optional[float]:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def _spread_pct(values: list) -> Optional[float]:
    """(max - min) / median of the rounds, in percent; MLPerf asks results to replicate within 5%."""
    present = [value for value in values if value is not None]
    if len(present) < 2 or not statistics.median(present):
        return None
    return round(100.0 * (max(present) - min(present)) / statistics.median(present), 2)


def _parse_last_json_line(stdout: str, device: str, artifact: Path) -> dict:
    lines = [line for line in stdout.strip().splitlines() if line.strip()]
    try:
        output = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        output = None
    if not isinstance(output, dict):
        tail = lines[-1][:200] if lines else "nothing"
        raise TargetError(f"{device}: the profiling script printed no JSON result for {artifact.name} (last line: {tail})")
    return output


def _exit_reason(returncode: int) -> str:
    if returncode >= 0:
        return f"exit code {returncode}"
    names = {int(sig): sig.name for sig in signal.Signals}
    return f"killed by {names.get(-returncode, f'signal {-returncode}')}"


def _log_group(entries: list[dict], log) -> None:
    for entry in entries:
        log(describe_entry(entry))
        spread = entry["spread_pct"]
        if spread is not None and spread > REPLICATION_LIMIT_PCT:
            log(f"  warning: the rounds of {Path(entry['artifact']).name} lie {spread:.1f}% apart "
                f"(MLPerf asks for {REPLICATION_LIMIT_PCT:g}%): was the device busy?")


def describe_entry(entry: dict) -> str:
    """One line that says device, runtime, delegate, threads and real/emulated/simulated next to the number."""
    where = f"{entry['device']} {entry['runtime']}/{entry['delegate']} {entry['threads']}t [{entry['obtained']}]"
    value = entry["value"]
    if value is None:
        text = entry.get("note") or "ran; no device latency"
    elif entry["metric"] == "latency":
        text = f"p50 {value:.3f} ms" + ("" if entry["obtained"] == "real" else f" ({entry['obtained']})")
    elif entry["metric"] == "instructions":
        text = f"{value / 1e6:.3f} M instructions/inference"
    elif entry["metric"] == "simulator_wall_time":
        text = f"ran; simulator wall time {value:.1f} ms (not a device latency)"
    else:
        shown = f"{value:,.0f}" if float(value).is_integer() else f"{value:g}"
        text = f"{entry['metric']} {shown} {entry['unit']}" + (" (estimated)" if entry["obtained"] == "estimated" else "")
    spread = f" ±{entry['spread_pct']:.1f}%" if entry["spread_pct"] is not None else ""
    ratio = f", x{entry['ratio_to_float']:.2f} vs float" if entry["ratio_to_float"] is not None else ""
    return f"{where}: {Path(entry['artifact']).name} {text}{spread}{ratio}"
