"""``edgekit analyze BUILD_DIR``: which layers lose the int8 accuracy, and what keeping them in float costs.

Reads a finished build (its recipe from report.json, its float model), then:

* ranks the layers by sensitivity (``edgekit.quantize.sensitivity``: top-1 with only that layer quantized,
  with only that layer in float, weights-only and activations-only; torch, simulated on the PTQ graph);
* walks the ``max_drop`` steps (the recipe's ``quantize.max_drop``, or ``--max-drop``): for every step, the
  PTQ model with that step's layers in float is written in each export format, its top-1 measured inside
  each runtime on the same test images, and its cost measured on a device profile (latency on a real
  device, instructions under emulation: the profile's own kind, named in each entry);

and writes both into the build's report.json (``analysis``) and report.html.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgekit.errors import UserInputError

DEFAULT_DEVICE = "devices/host-smoke.yaml"


def analyze(build_dir: Path, *, samples: int | None = None, max_drop: float | None = None,
            device: str | None = DEFAULT_DEVICE, log=print) -> dict:
    """The ``analysis`` section for ``build_dir``, also written into its report.json and report.html."""
    import torch

    from edgekit.artifacts import write_json
    from edgekit.quantize import get_backend, resolve_backend
    from edgekit.quantize.sensitivity import select_float_layers
    from edgekit.report import write_html
    from edgekit.stages import _calibration, _test_images_and_labels, model_from_recipe
    from edgekit.train import configure_torch

    report, recipe = _read_build(build_dir)
    config = recipe.quantize
    backend_name = resolve_backend(config.backend, recipe.export.formats)
    if backend_name != "pt2e":
        raise UserInputError(f"{build_dir}: analyze works on PT2E builds; this one used quantize.backend {backend_name}")
    configure_torch(recipe.train.threads)
    model = model_from_recipe(recipe)
    model.load_state_dict(torch.load(build_dir / "train" / "model.pt", map_location="cpu", weights_only=True))
    model.eval()
    images, labels = _test_images_and_labels(recipe, samples or config.sensitivity_samples)
    calibration = _calibration(recipe, config.calibration_batches)
    goal = config.max_drop if max_drop is None else max_drop
    backend = get_backend("pt2e")
    log(f"analyze: sensitivity of {len(images)} test images, every layer quantized alone and kept float alone")
    sensitivity, search = select_float_layers(backend, model, images[:2], calibration, images, labels,
                                              per_channel=config.weights == "per_channel",
                                              max_drop=100.0 if goal is None else goal,
                                              always_float=tuple(config.keep_float))
    analysis = {"sensitivity": sensitivity}
    if goal is not None:
        for number, step in enumerate(search["steps"]):
            log(f"analyze: max_drop step {number}: {len(step['float_layers'])} layer(s) in float")
            step["files"] = _measure_step(recipe, backend, model, calibration, images, labels, step["float_layers"],
                                          build_dir / "analysis" / f"step{number}", device)
        analysis["max_drop"] = search
    report["analysis"] = analysis
    write_json(build_dir / "report.json", report)
    write_html(report, build_dir / "report.html")
    return analysis


def _read_build(build_dir: Path):
    from edgekit.recipe.load import validate

    report_file = build_dir / "report.json"
    if not report_file.is_file():
        raise UserInputError(f"{build_dir}: no report.json (not a build directory, or the build has not started)")
    try:
        report = json.loads(report_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserInputError(f"{report_file}: not a JSON report ({exc})") from None
    if not isinstance(report, dict) or not isinstance(report.get("recipe"), dict):
        raise UserInputError(f"{report_file}: no recipe in the report")
    if not (build_dir / "train" / "model.pt").is_file():
        raise UserInputError(f"{build_dir}: no train/model.pt (the build has not trained its float model yet)")
    return report, validate(report["recipe"], source=str(report_file))


def _measure_step(recipe, backend, model, calibration, images, labels, float_layers: list[str], folder: Path,
                  device: str | None) -> list[dict]:
    """The step's PTQ model in every export format: top-1 inside each runtime, cost on ``device``."""
    from edgekit.formats import get_format
    from edgekit.quantize.algorithm import ptq

    converted = ptq(backend, model, images[:2], calibration, recipe.quantize.weights == "per_channel",
                    tuple(float_layers)).converted
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for fmt in map(get_format, recipe.export.formats):
        path = folder / f"ptq{fmt.suffix}"
        fmt.write(converted, images[:2], path, recipe.export, "int8", **backend.export_options(converted, fmt.name))
        for runtime in fmt.runtimes:
            if runtime in recipe.evaluate.runtimes:
                top1 = _runtime_top1(path, runtime, images.numpy(), labels.numpy(), recipe.evaluate.threads)
                files.append({"artifact": str(path), "format": fmt.name, "runtime": runtime, "top1": top1,
                              "samples": len(images)})
    if device:
        _add_costs(files, device)
    return files


def _runtime_top1(path: Path, runtime: str, images, labels, threads: int, batch: int = 100) -> float:
    from edgekit.runtimes import get_runtime

    session = get_runtime(runtime).load(path, threads=threads)
    hits = sum(int((session.run(images[start : start + batch]).argmax(1) == labels[start : start + batch]).sum())
               for start in range(0, len(images), batch))
    return round(100.0 * hits / len(images), 2)


def _add_costs(files: list[dict], device: str) -> None:
    """Each file's cost on ``device`` (latency, or instructions under emulation), as the profile stage measures."""
    from edgekit.profile import load_device_profile, profile_artifacts

    profile = load_device_profile(device)
    paths = sorted({Path(entry["artifact"]) for entry in files})
    measured = profile_artifacts(paths, profile, threads=[1], log=lambda line: None)
    by_file = {(Path(entry["artifact"]).name, Path(entry["artifact"]).parent, entry["runtime"]): entry for entry in measured}
    for entry in files:
        found = by_file.get((Path(entry["artifact"]).name, Path(entry["artifact"]).parent, entry["runtime"]))
        if found:
            entry["cost"] = {key: found.get(key) for key in ("metric", "unit", "value", "obtained", "device",
                                                               "runtime", "delegate", "threads")}


def add_parser(commands) -> None:
    parser = commands.add_parser("analyze", help="rank a build's layers by int8 sensitivity; cost of keeping them float")
    parser.add_argument("build_dir", type=Path, metavar="BUILD_DIR", help="a build directory (builds/<name>)")
    parser.add_argument("--samples", type=int, metavar="N", help="test images to evaluate on "
                        "(default: quantize.sensitivity_samples)")
    parser.add_argument("--max-drop", type=float, metavar="POINTS", help="walk the max_drop steps to this top-1 "
                        "drop (default: the recipe's quantize.max_drop; none: ranking only)")
    parser.add_argument("--device", default=DEFAULT_DEVICE, metavar="PROFILE",
                        help=f"device profile that measures each step's cost (default: {DEFAULT_DEVICE}; "
                        "'none' skips it)")
    parser.set_defaults(handler=_run)


def _run(args) -> int:
    if args.samples is not None and not 10 <= args.samples <= 1_000_000:
        raise UserInputError(f"--samples: {args.samples} is not between 10 and 1000000")
    if args.max_drop is not None and not 0 <= args.max_drop <= 100:
        raise UserInputError(f"--max-drop: {args.max_drop} is not between 0 and 100 points")
    device = None if args.device == "none" else args.device
    if device and not Path(device).is_file():
        raise UserInputError(f"--device: device profile file not found: {device}")
    analysis = analyze(args.build_dir, samples=args.samples, max_drop=args.max_drop, device=device)
    print(format_analysis(analysis))
    return 0


def format_analysis(analysis: dict, worst: int = 5) -> str:
    """A few lines for the terminal: the worst layers, weights vs activations, the max_drop steps."""
    sensitivity = analysis["sensitivity"]
    lines = [f"sensitivity ({sensitivity['source']}, {sensitivity['samples']} test images): float "
             f"{sensitivity['float_top1']:.2f}, int8 {sensitivity['int8_top1']:.2f}, weights only "
             f"{sensitivity['weights_only_top1']:.2f}, activations only {sensitivity['activations_only_top1']:.2f}"]
    for record in sensitivity["layers"][:worst]:
        lines.append(f"  {record['rank']:>2}. {record['layer']:<28} alone int8 {record['only_this_quantized_top1']:6.2f}"
                     f"   alone float {record['only_this_float_top1']:6.2f}")
    for number, step in enumerate((analysis.get("max_drop") or {}).get("steps", [])):
        measured = "; ".join(f"{entry['runtime']} {entry['top1']:.2f}" + _cost_text(entry.get("cost"))
                             for entry in step.get("files", []))
        lines.append(f"  step {number}: float {', '.join(step['float_layers']) or '(none)'}: torch {step['top1']:.2f}"
                     f" (drop {step['drop']:.2f}); {measured}")
    return "\n".join(lines)


def _cost_text(cost: dict | None) -> str:
    if not cost or cost.get("value") is None:
        return ""
    return f" {cost['value']:.4g} {cost['unit']} ({cost['obtained']}, {cost['device']}, {cost['threads']} thread)"
