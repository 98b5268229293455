"""The stages of a build, each a function from the build context (recipe + earlier artifacts) to a
``StageOutput``, declared as a ``Stage`` right after it (what it reads, what its cache key covers).
``STAGES`` lists them in the order data flows; ``pipeline.py`` runs them. Heavy imports happen inside
each stage."""

from __future__ import annotations

from pathlib import Path

from edgekit.artifacts import sha256_file
from edgekit.formats import FORMATS, get_format
from edgekit.recipe import Recipe
from edgekit.runner import ALL_ARTIFACTS, BuildContext, Stage, StageOutput

TORCH = ("torch",)
CONVERTERS = ("torch", "torchao", "litert-torch", "ai-edge-litert", "onnx", "onnxscript", "onnxruntime", "nncf",
              "executorch")
RUNTIMES = ("ai-edge-litert", "onnxruntime", "numpy", "openvino", "executorch")


def model_from_recipe(recipe: Recipe):
    from edgekit.models import create_model

    section = recipe.model
    return create_model(section.arch, num_classes=section.num_classes, activation=section.activation,
                        dropout=section.dropout, **section.options)


def model_summary(recipe: Recipe) -> dict:
    from edgekit.models.cost import profile_model

    cost = profile_model(model_from_recipe(recipe), recipe.model.resolution)
    section = recipe.model
    return {"arch": section.arch, **section.options, "resolution": section.resolution,
            "num_classes": section.num_classes, "macs": cost.macs, "params": cost.params}


def _datasets_and_transform(recipe: Recipe, train: bool):
    from edgekit.data import BatchTransform, build_split

    dataset = build_split(recipe.data, recipe.model.resolution, recipe.seed, "train" if train else "test")
    transform = BatchTransform(recipe.model.resolution, recipe.data.mean, recipe.data.std,
                               augment=train and recipe.data.augment)
    return dataset, transform


def weights_key(recipe: Recipe) -> dict:
    weights = recipe.model.weights
    return {"weights_sha256": sha256_file(weights) if weights and Path(weights).is_file() else weights}


def train_stage(context: BuildContext) -> StageOutput:
    """Float training, in this process or, with ``train.distributed``, on every rank under torchrun."""
    from edgekit.train import distributed

    if distributed.processes(context.recipe.train) > 1:
        training = distributed.run_job("train", context)
    else:
        training = train_float(context)
    context.path("train/checkpoint.pt").unlink(missing_ok=True)
    return StageOutput({"float_model": "train/model.pt"}, {"training": training})


def train_float(context: BuildContext) -> dict:
    """Train the float model in this process (one rank under torchrun); the process of rank 0 writes
    ``train/model.pt``. Returns the report's ``training`` section."""
    import torch

    from edgekit.artifacts import save_torch
    from edgekit.train import configure_torch, distributed, pick_device, train

    recipe = context.recipe
    configure_torch(recipe.train.threads)
    device = distributed.process_device(pick_device(recipe.train.device))
    torch.manual_seed(recipe.seed)
    model = model_from_recipe(recipe)
    if recipe.model.weights:
        _load_recipe_weights(model, recipe)
    dataset, transform = _datasets_and_transform(recipe, train=True)
    checkpoint = context.path("train/checkpoint.pt")
    result = train(model.to(device), dataset, transform, recipe.train, seed=recipe.seed,
                   checkpoint_path=checkpoint, checkpoint_key=context.stage_key, on_step=context.on_step)
    if distributed.is_main_process():
        save_torch(context.path("train/model.pt"), {k: v.cpu() for k, v in model.state_dict().items()})
    return {
        "dataset": dataset.name, "images": len(dataset), "epochs": recipe.train.epochs, "steps": result.steps,
        "resumed_from_step": result.resumed_from_step, "seconds": round(result.seconds, 1),
        "device": str(device), "threads": torch.get_num_threads(), "history": result.history,
        "distributed": result.processes,
    }


def _load_recipe_weights(model, recipe: Recipe) -> None:
    """``model.weights`` into the model, with a warning when the recipe normalises differently from the file."""
    import sys

    from edgekit.data.normalize import normalization_warning
    from edgekit.train import load_weights

    section = recipe.model
    imported = load_weights(model, section.weights, section.weights_format, arch=section.arch,
                            options={"activation": section.activation, **section.options})
    warning = normalization_warning(recipe.data.mean, recipe.data.std, imported.preprocessing)
    if warning:
        print(warning, file=sys.stderr)


TRAIN = Stage("train", ("seed", "model", "data", "train"), (), train_stage, weights_key,
              ignore=("data.max_eval_samples", "train.eval_batch_size"), packages=TORCH)


def evaluate_float_stage(context: BuildContext) -> StageOutput:
    import torch

    from edgekit.train import configure_torch, evaluate, pick_device

    recipe = context.recipe
    configure_torch(recipe.train.threads)
    device = pick_device(recipe.train.device)
    model = model_from_recipe(recipe)
    model.load_state_dict(torch.load(context.artifact("float_model"), map_location="cpu", weights_only=True))
    dataset, transform = _datasets_and_transform(recipe, train=False)
    scores = evaluate(model.to(device), dataset, transform, recipe.train.eval_batch_size, "evaluate float")
    entry = {"artifact": context.artifacts["float_model"], "runtime": "torch", "precision": "float32",
             "method": "float", "dataset": dataset.name, "device": str(device),
             "threads": torch.get_num_threads(), **scores}
    return StageOutput({}, {"accuracy": [entry]})


EVALUATE = Stage("evaluate", ("seed", "model", "data", "train"), ("float_model",), evaluate_float_stage,
                 packages=TORCH)


def _float_model(context: BuildContext):
    import torch

    model = model_from_recipe(context.recipe)
    model.load_state_dict(torch.load(context.artifact("float_model"), map_location="cpu", weights_only=True))
    return model.eval()


def _example_batch(recipe: Recipe):
    """Two real test images: export traces with real data, and batch 2 keeps the batch dim symbolic."""
    import torch

    test_set, transform = _datasets_and_transform(recipe, train=False)
    return transform(test_set.load(torch.arange(2)))


def export_float_stage(context: BuildContext) -> StageOutput:
    from edgekit.export import artifact_entry
    from edgekit.train import configure_torch

    recipe = context.recipe
    configure_torch(recipe.train.threads)
    model, example = _float_model(context), _example_batch(recipe)
    artifacts, entries = {}, []
    for fmt in map(get_format, recipe.export.formats):
        relative = f"float/model{fmt.suffix}"
        fmt.write(model, example, context.path(relative), recipe.export, "float32")
        artifacts[f"float_{fmt.name}"] = relative
        entries.append(artifact_entry(f"float_{fmt.name}", context.path(relative), context.out_dir, fmt.name,
                                      "float32", "float", "torch"))
    return StageOutput(artifacts, {"artifacts": entries})


EXPORT = Stage("export", ("seed", "model", "data", "train", "export"), ("float_model",), export_float_stage,
               ignore=("data.max_train_samples", "data.augment"), packages=CONVERTERS)


REFERENCE_SAMPLES = 500


def quantize_stage(context: BuildContext) -> StageOutput:
    """PTQ (always) and QAT (``quantize.method: qat``): the prepared models' states and their torch logits."""
    import numpy as np
    import torch

    from edgekit.artifacts import save_torch, write_atomically, write_json
    from edgekit.quantize import get_backend, resolve_backend
    from edgekit.quantize.algorithm import ptq, qat
    from edgekit.train import configure_torch, distributed

    recipe, config = context.recipe, context.recipe.quantize
    if config.method == "none":
        return StageOutput({}, {"quantization": {"method": "none"}})
    configure_torch(recipe.train.threads)
    torch.manual_seed(recipe.seed)
    backend_name = resolve_backend(config.backend, recipe.export.formats)
    backend = get_backend(backend_name)
    float_model = _float_model(context)
    train_set, train_transform = _datasets_and_transform(recipe, train=True)
    example = _example_batch(recipe)
    calibration = _calibration(recipe, config.calibration_batches)
    per_channel = config.weights == "per_channel"
    kept, selection = _float_layers(recipe, backend, float_model, example, calibration)
    results = {"ptq": ptq(backend, float_model, example, calibration, per_channel, kept)}
    if config.method == "qat" and distributed.processes(recipe.train) > 1:
        results["qat"] = _qat_under_torchrun(context, backend, example, calibration, kept)
    elif config.method == "qat":
        results["qat"] = qat(backend, _float_model(context), example, calibration, dataset=train_set,
                             transform=train_transform, train_config=recipe.train, config=config,
                             seed=recipe.seed, checkpoint_path=context.path("quantize/qat_checkpoint.pt"),
                             checkpoint_key=context.stage_key, on_step=context.on_step, keep_float=kept)

    artifacts = {}
    for method, result in results.items():
        state_path = f"quantize/{method}_state.pt"
        save_torch(context.path(state_path), backend.state_dict(result.prepared))
        artifacts[f"{method}_state"] = state_path
    context.path("quantize/qat_checkpoint.pt").unlink(missing_ok=True)

    reference = _reference_logits(recipe, float_model, results)
    write_atomically(context.path("quantize/reference.npz"), lambda tmp: np.savez(open(tmp, "wb"), **reference))
    artifacts["reference"] = "quantize/reference.npz"
    write_json(context.path(KEPT_FLOAT), list(kept))
    artifacts["keep_float"] = KEPT_FLOAT
    report = {"quantization": {
        "method": config.method, "backend": backend_name, "weights": config.weights, "activations": config.activations,
        "calibration_images": sum(len(batch) for batch in calibration), "keep_float": list(kept), **selection}}
    if "qat" in results:
        training = results["qat"].training
        report["qat"] = {"backend": backend_name, "epochs": config.epochs, "lr": config.lr, "steps": training.steps,
                         "seconds": round(training.seconds, 1), "resumed_from_step": training.resumed_from_step,
                         "freeze_bn_after": config.freeze_bn_after,
                         "freeze_observers_after": config.freeze_observers_after, "history": training.history,
                         "distributed": training.processes}
    return StageOutput(artifacts, report)


def _qat_under_torchrun(context: BuildContext, backend, example, calibration, keep_float: tuple[str, ...]):
    """QAT on every rank under torchrun (``qat_on_this_rank``) keeping ``keep_float`` in float; its state,
    written by rank 0, restored here."""
    import torch

    from edgekit.quantize import QuantScheme
    from edgekit.quantize.algorithm import Quantized
    from edgekit.train import TrainResult, distributed

    summary = distributed.run_job("qat", context, {"keep_float": list(keep_float)})
    state = torch.load(context.path(QAT_STATE), map_location="cpu", weights_only=True)
    scheme = QuantScheme(per_channel_weights=context.recipe.quantize.weights == "per_channel", qat=True,
                         keep_float=tuple(keep_float))
    restored = backend.restore(_float_model(context), example, scheme, state, calibration)
    return Quantized(restored, backend.convert(restored), TrainResult(**summary))


QAT_STATE = "quantize/qat_state.pt"


def qat_on_this_rank(context: BuildContext, keep_float: list[str]) -> dict:
    """One rank's QAT fine-tuning under torchrun (on CPUs, as in one process); rank 0 writes ``QAT_STATE``.
    Returns the training summary (``TrainResult`` fields)."""
    import dataclasses

    import torch

    from edgekit.artifacts import save_torch
    from edgekit.quantize import get_backend, resolve_backend
    from edgekit.quantize.algorithm import qat
    from edgekit.train import configure_torch, distributed

    recipe, config = context.recipe, context.recipe.quantize
    configure_torch(recipe.train.threads)
    torch.manual_seed(recipe.seed)
    backend = get_backend(resolve_backend(config.backend, recipe.export.formats))
    train_set, train_transform = _datasets_and_transform(recipe, train=True)
    result = qat(backend, _float_model(context), _example_batch(recipe), _calibration(recipe, config.calibration_batches),
                 dataset=train_set, transform=train_transform, train_config=recipe.train, config=config,
                 seed=recipe.seed, checkpoint_path=context.path("quantize/qat_checkpoint.pt"),
                 checkpoint_key=context.stage_key, on_step=context.on_step, keep_float=tuple(keep_float),
                 convert=False)
    if distributed.is_main_process():
        save_torch(context.path(QAT_STATE), backend.state_dict(result.prepared))
    return dataclasses.asdict(result.training)


QUANTIZED = ("ptq", "qat")
#: export options the quantize stage does not read: changing them re-exports without re-running QAT
EXPORT_ONLY_OPTIONS = ("export.tflite_io", "export.onnx_opset", "export.require_int8_kernels")
QUANTIZE = Stage("quantize", ("seed", "model", "data", "train", "quantize", "export"), ("float_model",),
                 quantize_stage, ignore=EXPORT_ONLY_OPTIONS, packages=CONVERTERS)


def export_int8_stage(context: BuildContext) -> StageOutput:
    """Each saved quantized state, restored and converted, written as int8 files in every export format."""
    import numpy as np
    import torch

    from edgekit.export import artifact_entry
    from edgekit.quantize import QuantScheme, get_backend, resolve_backend
    from edgekit.train import configure_torch

    recipe, config = context.recipe, context.recipe.quantize
    methods = [method for method in QUANTIZED if f"{method}_state" in context.artifacts]
    if not methods:
        return StageOutput({}, {})
    configure_torch(recipe.train.threads)
    backend_name = resolve_backend(config.backend, recipe.export.formats)
    backend = get_backend(backend_name)
    example = _example_batch(recipe)
    shapes_only = _calibration(recipe, 1)
    reference = dict(np.load(context.artifact("reference")))
    images = _reference_images(recipe, len(reference["indices"]))
    artifacts, entries = {}, []
    for method in methods:
        state = torch.load(context.artifact(f"{method}_state"), map_location="cpu", weights_only=True)
        scheme = QuantScheme(per_channel_weights=config.weights == "per_channel", qat=method == "qat",
                             keep_float=kept_float_layers(context))
        restored = backend.restore(_float_model(context), example, scheme, state, shapes_only)
        converted = backend.convert(restored)
        _check_restored(converted, images, reference[method], context.artifacts[f"{method}_state"])
        for fmt in map(get_format, recipe.export.formats):
            relative = f"int8/{method}{fmt.suffix}"
            fmt.write(converted, example, context.path(relative), recipe.export, "int8",
                      **backend.export_options(converted, fmt.name))
            artifacts[f"{method}_{fmt.name}"] = relative
            entries.append(artifact_entry(f"{method}_{fmt.name}", context.path(relative), context.out_dir, fmt.name,
                                          "int8", method, backend_name, fmt.io_type(recipe.export, "int8")))
    return StageOutput(artifacts, {"artifacts": entries})


EXPORT_INT8 = Stage("export_int8", ("seed", "model", "data", "train", "quantize", "export"), (ALL_ARTIFACTS,),
                    export_int8_stage, packages=CONVERTERS)


def _calibration(recipe: Recipe, count: int) -> list:
    """The first ``count`` calibration batches: training images, preprocessed without augmentation."""
    from edgekit.quantize.algorithm import calibration_batches

    train_set, _ = _datasets_and_transform(recipe, train=True)
    _, eval_transform = _datasets_and_transform(recipe, train=False)
    return list(calibration_batches(train_set, eval_transform, recipe.train.batch_size, count, recipe.seed))


def _reference_images(recipe: Recipe, count: int):
    """The first ``count`` test images (all of them when the split is smaller), preprocessed."""
    import torch

    test_set, transform = _datasets_and_transform(recipe, train=False)
    return transform(test_set.load(torch.arange(min(count, len(test_set)))))


KEPT_FLOAT = "quantize/keep_float.json"


def _float_layers(recipe: Recipe, backend, float_model, example, calibration) -> tuple[tuple[str, ...], dict]:
    """The layers every int8 model keeps in float: ``quantize.keep_float``, then those the ``max_drop`` search
    adds; and the search's report (``sensitivity``, ``max_drop``), empty without ``max_drop``."""
    from edgekit.quantize.keep_float import resolve_keep_float
    from edgekit.quantize.sensitivity import select_float_layers

    config = recipe.quantize
    kept = resolve_keep_float(float_model, config.keep_float)
    if config.max_drop is None:
        return kept, {}
    images, labels = _test_images_and_labels(recipe, config.sensitivity_samples)
    if backend.name != "pt2e":  # the search switches the PT2E graph's quantize/dequantize pairs
        from edgekit.quantize import get_backend

        backend = get_backend("pt2e")
    sensitivity, search = select_float_layers(backend, float_model, example, calibration, images, labels,
                                              per_channel=config.weights == "per_channel",
                                              max_drop=config.max_drop, always_float=kept)
    return tuple(search["float_layers"]), {"sensitivity": sensitivity, "max_drop": search}


def _test_images_and_labels(recipe: Recipe, count: int):
    """The first ``count`` test images (preprocessed) and their labels."""
    import torch

    test_set, transform = _datasets_and_transform(recipe, train=False)
    indices = torch.arange(min(count, len(test_set)))
    return transform(test_set.load(indices)), test_set.labels[indices]


def kept_float_layers(context: BuildContext) -> tuple[str, ...]:
    """The layers the quantize stage kept in float (none for a build made before ``keep_float`` existed)."""
    import json

    name = context.artifacts.get("keep_float")
    return tuple(json.loads(context.path(name).read_text())) if name else ()


def _check_restored(converted, images, expected, state_file: str) -> None:
    """The restored model must compute what the quantize stage evaluated, or its files would not be that model."""
    import numpy as np

    from edgekit.errors import EdgekitError

    logits = _torch_logits(converted, images)
    difference = float(np.abs(logits - expected).max(initial=0.0))
    if difference > 1e-4:
        raise EdgekitError(f"{state_file}: the restored quantized model differs from the one the quantize stage "
                           f"made (max |diff| {difference:.3g} on {len(images)} images); rerun with --force quantize")


def _reference_logits(recipe: Recipe, float_model, results) -> dict:
    """Torch outputs of every model on the first test images: what each exported file must reproduce."""
    import torch

    images = _reference_images(recipe, REFERENCE_SAMPLES)
    with torch.no_grad():
        arrays = {"float": float_model(images).numpy()}
    for method, result in results.items():
        arrays[method] = _torch_logits(result.converted, images)
    arrays["indices"] = torch.arange(len(images)).numpy()
    return arrays


def _torch_logits(module, images):
    """A converted graph's logits as a numpy array, 100 images at a time."""
    import torch

    with torch.no_grad():
        return torch.cat([module(chunk) for chunk in images.split(100)]).numpy()


EXPORTED = ("float", "ptq", "qat")


def exported_files(context: BuildContext) -> list[tuple[str, str, str]]:
    """(artifact name, method, format) of every exported model file, float first."""
    return [(f"{method}_{fmt}", method, fmt) for method in EXPORTED for fmt in FORMATS
            if f"{method}_{fmt}" in context.artifacts]


def evaluate_runtimes_stage(context: BuildContext) -> StageOutput:
    """Accuracy of every exported file inside each runtime of ``evaluate.runtimes`` that loads its format,
    its agreement with its torch model on the quantize stage's reference images, and its int8 kernels."""
    import numpy as np

    from edgekit.runtimes import check_int8
    from edgekit.runtimes.evaluate import compare_file, evaluate_file

    recipe = context.recipe
    test_set, transform = _datasets_and_transform(recipe, train=False)
    test_set = test_set.subset(recipe.evaluate.max_samples, recipe.seed)
    reference_file = context.artifacts.get("reference")
    references = dict(np.load(context.path(reference_file))) if reference_file else {}
    reference_images = _reference_images(recipe, len(references["indices"])).numpy() if references else None
    accuracy, kernels = [], []
    for name, method, fmt in exported_files(context):
        path = context.artifact(name)
        for runtime in get_format(fmt).runtimes:
            if runtime not in recipe.evaluate.runtimes:
                continue
            scores = evaluate_file(path, runtime, test_set, transform, threads=recipe.evaluate.threads,
                                   batch_size=recipe.train.eval_batch_size)
            entry = {"artifact": context.artifacts[name], "runtime": runtime,
                     "precision": "float32" if method == "float" else "int8", "method": method,
                     "dataset": test_set.name, "device": "cpu", "threads": recipe.evaluate.threads,
                     "top1": scores["top1"], "top5": scores["top5"], "samples": scores["samples"]}
            if method in references:
                agreement = compare_file(path, runtime, reference_images, references[method],
                                         threads=recipe.evaluate.threads, batch_size=recipe.train.eval_batch_size)
                entry["agreement"] = {"reference": f"torch {method} model", **agreement}
            accuracy.append(entry)
            if method != "float":
                kept = kept_float_layers(context)
                checked = check_int8(path, runtime, expected_float=kept, layers=_layer_order(recipe) if kept else None)
                kernels.append({**checked, "artifact": context.artifacts[name]})
    return StageOutput({}, {"accuracy": accuracy, "int8_kernels": kernels})


def _layer_order(recipe: Recipe) -> list[str]:
    """The model's conv/FC names in forward order (the order runtimes list their kernels in)."""
    import torch

    from edgekit.models.layers import model_layers

    resolution = recipe.model.resolution
    return [layer.name for layer in model_layers(model_from_recipe(recipe), torch.zeros(1, 3, resolution, resolution))]


RUNTIMES_STAGE = Stage("runtimes", ("seed", "model", "data", "train", "evaluate", "export"), (ALL_ARTIFACTS,),
                       evaluate_runtimes_stage, ignore=("data.max_train_samples", "data.augment"), packages=RUNTIMES)


def per_layer_stage(context: BuildContext) -> StageOutput:
    """SQNR and relative RMSE of every conv/FC output of each int8 file, read inside each runtime of
    ``evaluate.runtimes`` that loads it, against the float model's, on the first test images."""
    from edgekit.runtimes.per_layer import DEFAULT_SAMPLES, RUNTIME_READERS, per_layer_errors

    recipe = context.recipe
    files = [(name, method, fmt) for name, method, fmt in exported_files(context) if method != "float"]
    if not recipe.evaluate.per_layer or not files:
        return StageOutput({}, {})
    model = _float_model(context)
    images = _reference_images(recipe, DEFAULT_SAMPLES).numpy()
    entries = []
    for name, method, fmt in files:
        for runtime in get_format(fmt).runtimes:
            if runtime not in recipe.evaluate.runtimes or runtime not in RUNTIME_READERS:
                continue
            layers = per_layer_errors(context.artifact(name), runtime, model, images, threads=recipe.evaluate.threads)
            entries.append({"artifact": context.artifacts[name], "runtime": runtime, "method": method,
                            "samples": len(images), "layers": layers})
    return StageOutput({}, {"per_layer": entries})


PER_LAYER = Stage("per_layer", ("seed", "model", "data", "evaluate"), (ALL_ARTIFACTS,), per_layer_stage,
                  ignore=("data.max_train_samples", "data.augment"), packages=(*TORCH, *RUNTIMES))


def device_files_key(recipe: Recipe) -> dict:
    return {"device_files": {device: sha256_file(device) if Path(device).is_file() else None
                             for device in recipe.profile.devices}}


def per_op_stage(context: BuildContext) -> StageOutput:
    """Time per layer of each int8 .onnx next to its float twin's, on this host (1 thread), from onnxruntime's
    session profiler, layers named as in ``per_layer``. LiteRT's Python package has no op profiler (see
    edgekit/profile/per_op.py); its cost per kernel comes from the emulated devices' ``kernels``. The QNN HTP
    simulator's cycles per op are not reproducible (docs/per-layer.md) and stay out of the report."""
    from edgekit.profile.per_op import profile_layer_times

    names = {name: (method, fmt) for name, method, fmt in exported_files(context)}
    float_onnx = next((name for name, (method, fmt) in names.items() if method == "float" and fmt == "onnx"), None)
    int8_onnx = [name for name, (method, fmt) in names.items() if method != "float" and fmt == "onnx"]
    if "onnxruntime" not in context.recipe.evaluate.runtimes or float_onnx is None or not int8_onnx:
        return StageOutput({}, {})
    image = _reference_images(context.recipe, 1).numpy()
    report_names = {context.artifact(name): context.artifacts[name] for name in [float_onnx, *int8_onnx]}
    entries = profile_layer_times(context.artifact(float_onnx), [context.artifact(name) for name in int8_onnx],
                                  _float_model(context), image, threads=1, names=report_names)
    return StageOutput({}, {"per_op": entries})


PER_OP = Stage("per_op", ("seed", "model", "data", "evaluate"), (ALL_ARTIFACTS,), per_op_stage, cache=False,
               ignore=("data.max_train_samples", "data.augment"), packages=RUNTIMES)


def profile_stage(context: BuildContext) -> StageOutput:
    from edgekit.profile import load_device_profile, profile_artifacts

    files = exported_files(context)
    floats = {fmt: context.artifact(name) for name, method, fmt in files if method == "float"}
    int8 = [(context.artifact(name), fmt) for name, method, fmt in files if method != "float"]
    twins = {str(path): floats[fmt] for path, fmt in int8 if fmt in floats}
    paths = list(floats.values()) + [path for path, _ in int8]
    layers = _model_layers(context.recipe)
    entries = []
    for device_file in context.recipe.profile.devices:
        device = load_device_profile(device_file)
        measured = profile_artifacts(paths, device, float_twins=twins, threads=context.recipe.profile.threads,
                                     layers=layers, keep_dir=context.path("profile"))
        for entry in measured:
            entry["artifact"] = _relative_to(entry["artifact"], context.out_dir)
            if entry.get("float_artifact"):
                entry["float_artifact"] = _relative_to(entry["float_artifact"], context.out_dir)
            for what, kept in ((entry.get("estimate") or {}).get("files") or {}).items():
                entry["estimate"]["files"][what] = _relative_to(kept, context.out_dir)
        entries.extend(measured)
    return StageOutput({}, {"profiles": entries})


def _model_layers(recipe: Recipe) -> list:
    """The model's convs and FCs (names and output shapes) that name a target's per-layer estimates."""
    import torch

    from edgekit.models.layers import model_layers

    resolution = recipe.model.resolution
    return model_layers(model_from_recipe(recipe), torch.zeros(1, 3, resolution, resolution))


PROFILE = Stage("profile", ("profile", "model"), (ALL_ARTIFACTS,), profile_stage, device_files_key, cache=False,
                packages=RUNTIMES)


def _relative_to(path: str, out_dir: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(out_dir.resolve()))
    except ValueError:
        return str(path)


STAGES = (TRAIN, EVALUATE, EXPORT, QUANTIZE, EXPORT_INT8, RUNTIMES_STAGE, PER_LAYER, PER_OP, PROFILE)
