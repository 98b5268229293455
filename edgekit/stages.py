"""The stages of a build, each a function from the build context (recipe + earlier artifacts) to a
``StageOutput``. ``pipeline.py`` wires them; heavy imports happen inside each stage."""

from __future__ import annotations

from pathlib import Path

from edgekit.artifacts import sha256_file
from edgekit.pipeline import BuildContext, StageOutput
from edgekit.recipe import Recipe


def model_from_recipe(recipe: Recipe):
    from edgekit.models import create_model

    section = recipe.model
    return create_model(
        section.arch, alpha=section.alpha, num_classes=section.num_classes, activation=section.activation,
        conv=section.conv, shallow=section.shallow, padding=section.padding, dropout=section.dropout,
    )


def model_summary(recipe: Recipe) -> dict:
    from edgekit.models.cost import profile_model

    cost = profile_model(model_from_recipe(recipe), recipe.model.resolution)
    section = recipe.model
    return {"arch": section.arch, "alpha": section.alpha, "resolution": section.resolution,
            "num_classes": section.num_classes, "macs": cost.macs, "params": cost.params}


def _datasets_and_transform(recipe: Recipe, train: bool):
    from edgekit.data import BatchTransform, build_datasets

    train_set, test_set = build_datasets(recipe.data, recipe.model.resolution, recipe.seed)
    transform = BatchTransform(recipe.model.resolution, recipe.data.mean, recipe.data.std,
                               augment=train and recipe.data.augment)
    return (train_set if train else test_set), transform


def weights_key(recipe: Recipe) -> dict:
    weights = recipe.model.weights
    return {"weights_sha256": sha256_file(weights) if weights and Path(weights).is_file() else weights}


def train_stage(context: BuildContext) -> StageOutput:
    import torch

    from edgekit.artifacts import save_torch
    from edgekit.train import configure_torch, load_weights, pick_device, train

    recipe = context.recipe
    configure_torch(recipe.train.threads)
    device = pick_device(recipe.train.device)
    torch.manual_seed(recipe.seed)
    model = model_from_recipe(recipe)
    if recipe.model.weights:
        load_weights(model, recipe.model.weights)
    dataset, transform = _datasets_and_transform(recipe, train=True)
    checkpoint = context.path("train/checkpoint.pt")
    result = train(model.to(device), dataset, transform, recipe.train, seed=recipe.seed,
                   checkpoint_path=checkpoint, checkpoint_key=context.stage_key, on_step=context.on_step)
    save_torch(context.path("train/model.pt"), {k: v.cpu() for k, v in model.state_dict().items()})
    checkpoint.unlink(missing_ok=True)
    return StageOutput({"float_model": "train/model.pt"}, {"training": {
        "dataset": dataset.name, "images": len(dataset), "epochs": recipe.train.epochs, "steps": result.steps,
        "resumed_from_step": result.resumed_from_step, "seconds": round(result.seconds, 1),
        "device": str(device), "threads": torch.get_num_threads(), "history": result.history,
    }})


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
    from edgekit.export import FORMAT_SUFFIX, artifact_entry, write_onnx, write_tflite
    from edgekit.train import configure_torch

    recipe = context.recipe
    configure_torch(recipe.train.threads)
    model, example = _float_model(context), _example_batch(recipe)
    artifacts, entries = {}, []
    for fmt in recipe.export.formats:
        relative = f"float/model{FORMAT_SUFFIX[fmt]}"
        if fmt == "tflite":
            write_tflite(model, example, context.path(relative))
        else:
            write_onnx(model, example, context.path(relative), opset=recipe.export.onnx_opset)
        artifacts[f"float_{fmt}"] = relative
        entries.append(artifact_entry(f"float_{fmt}", context.path(relative), context.out_dir, fmt,
                                      "float32", "float", "torch"))
    return StageOutput(artifacts, {"artifacts": entries})


REFERENCE_SAMPLES = 500


def quantize_stage(context: BuildContext) -> StageOutput:
    """PTQ (always) and QAT (``quantize.method: qat``): the prepared models' states and their torch logits."""
    import numpy as np
    import torch

    from edgekit.artifacts import save_torch, write_atomically
    from edgekit.quantize import get_backend, resolve_backend
    from edgekit.quantize.algorithm import ptq, qat
    from edgekit.train import configure_torch

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
    results = {"ptq": ptq(backend, float_model, example, calibration, per_channel)}
    if config.method == "qat":
        results["qat"] = qat(backend, _float_model(context), example, calibration, dataset=train_set,
                             transform=train_transform, train_config=recipe.train, config=config,
                             seed=recipe.seed, checkpoint_path=context.path("quantize/qat_checkpoint.pt"),
                             checkpoint_key=context.stage_key, on_step=context.on_step)

    artifacts = {}
    for method, result in results.items():
        state_path = f"quantize/{method}_state.pt"
        save_torch(context.path(state_path), backend.state_dict(result.prepared))
        artifacts[f"{method}_state"] = state_path
    context.path("quantize/qat_checkpoint.pt").unlink(missing_ok=True)

    reference = _reference_logits(recipe, float_model, results)
    write_atomically(context.path("quantize/reference.npz"), lambda tmp: np.savez(open(tmp, "wb"), **reference))
    artifacts["reference"] = "quantize/reference.npz"
    report = {"quantization": {
        "method": config.method, "backend": backend_name, "weights": config.weights, "activations": config.activations,
        "calibration_images": sum(len(batch) for batch in calibration)}}
    if "qat" in results:
        training = results["qat"].training
        report["qat"] = {"backend": backend_name, "epochs": config.epochs, "lr": config.lr, "steps": training.steps,
                         "seconds": round(training.seconds, 1), "resumed_from_step": training.resumed_from_step,
                         "freeze_bn_after": config.freeze_bn_after,
                         "freeze_observers_after": config.freeze_observers_after, "history": training.history}
    return StageOutput(artifacts, report)


QUANTIZED = ("ptq", "qat")
#: export options the quantize stage does not read: changing them re-exports without re-running QAT
EXPORT_ONLY_OPTIONS = ("export.tflite_io", "export.onnx_opset", "export.require_int8_kernels")


def export_int8_stage(context: BuildContext) -> StageOutput:
    """Each saved quantized state, restored and converted, written as int8 files in every export format."""
    import numpy as np
    import torch

    from edgekit.export import FORMAT_SUFFIX, artifact_entry, write_onnx, write_tflite
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
        scheme = QuantScheme(per_channel_weights=config.weights == "per_channel", qat=method == "qat")
        restored = backend.restore(_float_model(context), example, scheme, state, shapes_only)
        converted = backend.convert(restored)
        _check_restored(converted, images, reference[method], context.artifacts[f"{method}_state"])
        for fmt in recipe.export.formats:
            relative = f"int8/{method}{FORMAT_SUFFIX[fmt]}"
            options = backend.export_options(converted, fmt)
            if fmt == "tflite":
                write_tflite(converted, example, context.path(relative), io=recipe.export.tflite_io, **options)
            else:
                write_onnx(converted, example, context.path(relative),
                           opset=max(recipe.export.onnx_opset, 17), **options)
            artifacts[f"{method}_{fmt}"] = relative
            io = recipe.export.tflite_io if fmt == "tflite" else "float32"
            entries.append(artifact_entry(f"{method}_{fmt}", context.path(relative), context.out_dir, fmt,
                                          "int8", method, backend_name, io))
    return StageOutput(artifacts, {"artifacts": entries})


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


class _StoredReference:
    """Replays torch logits saved by the quantize stage, batch after batch, as evaluate_file asks for them."""

    def __init__(self, logits):
        self.logits, self.cursor = logits, 0

    def __call__(self, images):
        rows = self.logits[self.cursor : self.cursor + len(images)]
        self.cursor += len(images)
        return rows


RUNTIME_FOR_FORMAT = {"tflite": "litert", "onnx": "onnxruntime"}
EXPORTED = ("float", "ptq", "qat")


def exported_files(context: BuildContext) -> list[tuple[str, str, str]]:
    """(artifact name, method, format) of every exported model file, float first."""
    files = []
    for method in EXPORTED:
        for fmt in ("tflite", "onnx"):
            if f"{method}_{fmt}" in context.artifacts:
                files.append((f"{method}_{fmt}", method, fmt))
    return files


def evaluate_runtimes_stage(context: BuildContext) -> StageOutput:
    import numpy as np
    import torch

    from edgekit.runtimes import check_int8
    from edgekit.runtimes.evaluate import evaluate_file

    recipe = context.recipe
    test_set, transform = _datasets_and_transform(recipe, train=False)
    test_set = test_set.subset(recipe.evaluate.max_samples, recipe.seed)
    reference_file = context.artifacts.get("reference")
    references = dict(np.load(context.path(reference_file))) if reference_file else {}
    accuracy, kernels = [], []
    for name, method, fmt in exported_files(context):
        runtime = RUNTIME_FOR_FORMAT[fmt]
        if runtime not in recipe.evaluate.runtimes:
            continue
        path = context.artifact(name)
        stored = references.get(method)
        scores = evaluate_file(path, runtime, test_set, transform, threads=recipe.evaluate.threads,
                               batch_size=recipe.train.eval_batch_size,
                               reference=_StoredReference(stored) if stored is not None else None,
                               reference_samples=len(stored) if stored is not None else 1)
        entry = {"artifact": context.artifacts[name], "runtime": runtime,
                 "precision": "float32" if method == "float" else "int8", "method": method,
                 "dataset": test_set.name, "device": "cpu", "threads": recipe.evaluate.threads,
                 "top1": scores["top1"], "top5": scores["top5"], "samples": scores["samples"]}
        if "reference" in scores:
            entry["agreement"] = {"reference": f"torch {method} model", **scores["reference"]}
        accuracy.append(entry)
        if method != "float":
            kernels.append({**check_int8(path, runtime), "artifact": context.artifacts[name]})
    return StageOutput({}, {"accuracy": accuracy, "int8_kernels": kernels})


def device_files_key(recipe: Recipe) -> dict:
    return {"device_files": {device: sha256_file(device) if Path(device).is_file() else None
                             for device in recipe.profile.devices}}


def profile_stage(context: BuildContext) -> StageOutput:
    from edgekit.profile import load_device_profile, profile_artifacts

    files = exported_files(context)
    floats = {fmt: context.artifact(name) for name, method, fmt in files if method == "float"}
    int8 = [(context.artifact(name), fmt) for name, method, fmt in files if method != "float"]
    twins = {str(path): floats[fmt] for path, fmt in int8 if fmt in floats}
    paths = list(floats.values()) + [path for path, _ in int8]
    entries = []
    for device_file in context.recipe.profile.devices:
        device = load_device_profile(device_file)
        measured = profile_artifacts(paths, device, float_twins=twins, threads=context.recipe.profile.threads)
        for entry in measured:
            entry["artifact"] = _relative_to(entry["artifact"], context.out_dir)
            if entry.get("float_artifact"):
                entry["float_artifact"] = _relative_to(entry["float_artifact"], context.out_dir)
        entries.extend(measured)
    return StageOutput({}, {"profiles": entries})


def _relative_to(path: str, out_dir: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(out_dir.resolve()))
    except ValueError:
        return str(path)
