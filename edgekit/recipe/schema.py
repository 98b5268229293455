"""The recipe schema: the one place where every option is defined, with its default and documentation.

A recipe is YAML with one section per pipeline stage. Sections that later stages fill in are defined
here already, so a recipe written today keeps validating tomorrow. ``docs/recipe.md`` and the README's
schema table are generated from these classes (``edgekit schema``); a test keeps them in sync.

Every number has a range (a typo such as ``num_classes: 1e9`` must not allocate a terabyte), floats are
finite, integers are strict (``true`` is not 1 thread). The ``model`` section holds the keys every model
family reads; each family declares its own options (``model.alpha`` ...) beside its code, registered with
``edgekit.models.register_model(options=...)``. Paths are relative to the working directory.
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal, Optional

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, ValidationError, ValidationInfo,
                      field_validator, model_validator)
from pydantic_core import InitErrorDetails, PydanticCustomError

from edgekit.errors import excerpt, suggest
from edgekit.formats import FORMATS, runtime_names

DEFAULT_FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"

MAX_THREADS = 256
MAX_COUNT = 1_000_000_000  # images, steps: far beyond any dataset edgekit reads
MAX_EPOCHS = 1000
MAX_BATCH = 4096
MAX_CLASSES = 100_000
# A build name becomes the folder builds/<name>: one path component, no "..", not hidden, not an option.
_PLAIN_NAME = re.compile(r"\w[\w.+-]{0,99}")


def _not_a_boolean(value):
    if isinstance(value, bool):
        raise PydanticCustomError("float_type", "must be a number, not true/false")
    return value


#: a float that is finite (NaN and infinity: "must be a finite number") and not a boolean
FiniteFloat = Annotated[float, BeforeValidator(_not_a_boolean), Field(allow_inf_nan=False)]
#: a thread count: a strict integer (``true`` is not 1), at most MAX_THREADS
Threads = Annotated[StrictInt, Field(ge=1, le=MAX_THREADS)]


class Section(BaseModel):
    """Base of every section: unknown keys are errors, values are checked on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelOptions(Section):
    """Base of a model family's own options: the keys of the ``model`` section that only that family has."""

    #: ``model.activation`` when the recipe does not set it (a family's paper may use another)
    default_activation: ClassVar[str] = "relu"


class ModelSection(Section):
    """Keys every model family reads, plus the options of the family ``arch`` (readable as attributes)."""

    # The family's options arrive as extra keys; the validator below checks them against the family.
    model_config = ConfigDict(extra="allow")

    arch: str = Field("mobilenet_v1", description="Model family from the registry (`edgekit.models.list_models()`); its own options are listed below the table.")
    # allow_any_resolution stands before resolution: the resolution check reads it.
    allow_any_resolution: bool = Field(False, description="Accept a resolution that is not a multiple of 32 (the last feature map then has uneven borders).")
    resolution: StrictInt = Field(224, gt=0, le=1024, description="Input resolution ρ·224 in pixels (square). A multiple of 32 unless `allow_any_resolution`.")
    num_classes: StrictInt = Field(1000, ge=1, le=MAX_CLASSES, description="Number of output classes.")
    activation: Literal["relu", "relu6"] = Field("relu", description="Activation after every BN; when not set, the family's own (`relu6` for mobilenet_v2).")
    dropout: FiniteFloat = Field(0.0, ge=0, lt=1, description="Dropout before the classifier.")
    weights: Optional[str] = Field(None, description="Weights to start from: an edgekit state dict, a timm MobileNet v1 checkpoint (`.safetensors`/`.pth`), Keras MobileNet weights (`.h5`/`.weights.h5`), read without running code from the file (docs/fine-tune.md). A classifier of another class count is replaced by a new one. With `train.epochs: 0` it replaces training.")
    weights_format: Literal["auto", "edgekit", "timm", "keras"] = Field("auto", description="Layout of `model.weights`; `auto` guesses it from the file.")

    @field_validator("arch")
    @classmethod
    def _registered_family(cls, arch: str) -> str:
        from edgekit.models import list_models

        if arch not in list_models():
            hint = suggest(arch, list_models())
            raise ValueError(f"unknown model family (registered: {', '.join(list_models())})"
                             + (f"; {hint}" if hint else ""))
        return arch

    @field_validator("resolution")
    @classmethod
    def _resolution_multiple_of_32(cls, resolution: int, info: ValidationInfo) -> int:
        if resolution % 32 and not info.data.get("allow_any_resolution"):
            raise ValueError(
                f"resolution {resolution} is not a multiple of 32 (set model.allow_any_resolution: true to allow it)"
            )
        return resolution

    @model_validator(mode="after")
    def _family_options(self) -> "ModelSection":
        options_model = family_options(self.arch)
        given = self.__pydantic_extra__
        for key in given:
            if key not in options_model.model_fields:
                raise _error("unknown_option", (key,), _unknown_option_hint(key, self.arch), given[key])
        try:
            options = options_model.model_validate(given)
        except ValidationError as exc:
            raise ValidationError.from_exception_data(type(self).__name__, [
                InitErrorDetails(type=PydanticCustomError(error["type"], error["msg"]), loc=error["loc"], input=error["input"])
                for error in exc.errors()
            ]) from None
        given.clear()
        given.update(options.model_dump())
        if "activation" not in self.model_fields_set:
            # set directly: an assignment would validate the section again, and this validator with it
            self.__dict__["activation"] = getattr(options_model, "default_activation", ModelOptions.default_activation)
        return self

    def __setattr__(self, name: str, value) -> None:
        if name in self.__pydantic_extra__:
            # checks the new value like the validator above (pydantic does not re-check an extra key)
            value = getattr(family_options(self.arch).model_validate({**self.options, name: value}), name)
        super().__setattr__(name, value)

    @property
    def options(self) -> dict:
        """The family's own options, defaults filled in: keyword arguments of its model entrypoint."""
        return dict(self.__pydantic_extra__)

    @classmethod
    def extra_keys(cls) -> list[str]:
        """Option keys of every registered family (``--set`` accepts them; validation picks the family's)."""
        from edgekit.models import list_models

        return sorted({key for arch in list_models() for key in family_options(arch).model_fields})


def family_options(arch: str) -> type[BaseModel]:
    """The options model of model family ``arch`` (an empty one when it declares none)."""
    from edgekit.models import model_options

    return model_options(arch) or ModelOptions


def _unknown_option_hint(key: str, arch: str) -> str:
    from edgekit.models import list_models

    owners = [other for other in list_models() if key in family_options(other).model_fields]
    if owners:
        return f"an option of {', '.join(owners)}, not of {arch}"
    own = list(family_options(arch).model_fields)
    return suggest(key, [*ModelSection.model_fields, *own]) or (f"{arch} options: {', '.join(own)}" if own else f"{arch} has no options")


def _error(kind: str, loc: tuple, message: str, given) -> ValidationError:
    """A ValidationError at ``loc`` (relative to the model that raises it), for checks across fields."""
    detail = InitErrorDetails(type=PydanticCustomError(kind, message), loc=loc, input=given)
    return ValidationError.from_exception_data("Recipe", [detail])


class DataSection(Section):
    dataset: Literal["fashion_mnist", "imagefolder"] = Field("fashion_mnist", description="`fashion_mnist` (IDX files) or `imagefolder` (`train/` and `val/` class folders).")
    root: Optional[str] = Field(None, description=f"Dataset directory (must exist when given). Default for fashion_mnist: `{DEFAULT_FASHION_MNIST_ROOT}` (Debian's dataset-fashion-mnist).")
    max_train_samples: Optional[StrictInt] = Field(None, ge=1, le=MAX_COUNT, description="Use a deterministic subset of this many training images (stratified by seed).")
    max_eval_samples: Optional[StrictInt] = Field(None, ge=1, le=MAX_COUNT, description="Use a deterministic subset of this many test images.")
    mean: list[Annotated[FiniteFloat, Field(ge=0, le=1)]] = Field([0.5, 0.5, 0.5], min_length=3, max_length=3, description="Per-channel normalisation mean (after scaling to [0, 1]).")
    std: list[Annotated[FiniteFloat, Field(gt=0, le=1)]] = Field([0.5, 0.5, 0.5], min_length=3, max_length=3, description="Per-channel normalisation std.")
    augment: bool = Field(True, description="Light training augmentation: random shift by up to 1/8 of the image and horizontal flip.")
    normalize: Literal["recipe", "from_weights"] = Field("recipe", description="`recipe`: `data.mean`/`data.std` as given; `from_weights`: the mean/std `model.weights` was trained with (Keras and timm MobileNet v1: [-1, 1]) replace them.")


MAX_PROCESSES = 1024


class DistributedSection(Section):
    nproc_per_node: StrictInt = Field(1, ge=1, le=MAX_PROCESSES, description="Training processes per node (`edgekit build --nproc-per-node`). With more than one process in all, float training and QAT run under torchrun with DistributedDataParallel (gloo on CPU, NCCL on CUDA, from `train.device`); the other stages run once. `train.batch_size` stays the global batch, split evenly between the processes; the learning rate is not scaled (see docs/distributed.md).")
    nnodes: StrictInt = Field(1, ge=1, le=MAX_PROCESSES, description="Nodes taking part (`--nnodes`); each node runs `edgekit build` with its own `--node-rank` and the same `--rdzv-endpoint`.")


class TrainSection(Section):
    epochs: FiniteFloat = Field(2, ge=0, le=MAX_EPOCHS, description="Float training epochs (fractions allowed). 0 with `model.weights` skips training.")
    batch_size: StrictInt = Field(64, ge=1, le=MAX_BATCH, description="Training batch size.")
    eval_batch_size: StrictInt = Field(256, ge=1, le=MAX_BATCH, description="Batch size for evaluation.")
    optimizer: Literal["sgd", "adamw"] = Field("adamw", description="Optimiser.")
    lr: FiniteFloat = Field(2e-3, gt=0, le=1e6, description="Peak learning rate.")
    momentum: FiniteFloat = Field(0.9, ge=0, lt=1, description="SGD momentum (AdamW beta1).")
    weight_decay: FiniteFloat = Field(5e-4, ge=0, le=1, description="Weight decay.")
    schedule: Literal["cosine", "onecycle", "constant"] = Field("onecycle", description="Learning-rate schedule over all steps.")
    warmup_fraction: FiniteFloat = Field(0.1, ge=0, lt=1, description="Share of the steps spent warming up (`onecycle`, `cosine`).")
    label_smoothing: FiniteFloat = Field(0.0, ge=0, lt=1, description="Label smoothing of the cross-entropy loss.")
    threads: Optional[Threads] = Field(None, description="CPU threads for torch (default: all cores).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="`auto` uses CUDA when present.")
    channels_last: bool = Field(True, description="Train in channels-last memory format (about 1.5x faster for MobileNets on x86 CPUs).")
    checkpoint_every_steps: StrictInt = Field(200, ge=1, le=MAX_COUNT, description="Also checkpoint within an epoch every this many steps (resume granularity).")
    max_loss: FiniteFloat = Field(100.0, gt=0, le=1e6, description="Stop the build when the loss becomes NaN/inf or exceeds this.")
    freeze: Literal["none", "backbone", "backbone_then_all"] = Field("none", description="Fine-tuning: `backbone` trains only the classifier (the backbone's batch norms keep their statistics); `backbone_then_all` unfreezes everything after `train.unfreeze_after` of the steps.")
    unfreeze_after: FiniteFloat = Field(0.5, ge=0, le=1, description="With `freeze: backbone_then_all`, the fraction of the training steps after which the backbone trains too.")
    head_lr_multiplier: FiniteFloat = Field(1.0, gt=0, le=1000, description="The classifier's learning rate is `train.lr` times this (a new head can learn faster than a pretrained backbone).")
    distributed: DistributedSection = Field(default_factory=DistributedSection, description="Data-parallel training.")
    amp: Literal["off", "bf16", "fp16"] = Field("off", description="Mixed precision for float training: autocast to bfloat16 (CPU or CUDA) or float16 (CUDA only, with a gradient scaler). QAT always runs in float32.")
    compile: bool = Field(False, description="Compile the model with `torch.compile` for float training (opt-in: the first steps wait for the compiler). QAT never compiles.")

    @model_validator(mode="after")
    def _batch_splits_evenly(self) -> "TrainSection":
        processes = self.distributed.nproc_per_node * self.distributed.nnodes
        if self.batch_size % processes:
            raise _error("batch_not_divisible", ("batch_size",),
                         f"the global batch {self.batch_size} does not split evenly between {processes} processes "
                         f"(train.distributed: {self.distributed.nnodes} node(s) x {self.distributed.nproc_per_node}); "
                         f"use a multiple of {processes}", self.batch_size)
        return self


class QuantizeSection(Section):
    method: Literal["qat", "ptq", "none"] = Field("qat", description="`qat`: calibrate then fine-tune with fake quantisation; `ptq`: calibrate only; `none`: float only. Every build also makes the PTQ model.")
    backend: Literal["auto", "nncf", "pt2e"] = Field("auto", description="QAT backend. `auto` picks per export format (see docs).")
    weights: Literal["per_channel", "per_tensor"] = Field("per_channel", description="Weight quantisation granularity (symmetric int8).")
    activations: Literal["per_tensor"] = Field("per_tensor", description="Activation quantisation granularity (int8).")
    calibration_batches: StrictInt = Field(16, ge=1, le=10_000, description="Batches used to calibrate ranges.")
    epochs: FiniteFloat = Field(1, ge=0, le=MAX_EPOCHS, description="QAT fine-tuning epochs.")
    lr: FiniteFloat = Field(1e-4, gt=0, le=1e6, description="QAT learning rate.")
    freeze_bn_after: FiniteFloat = Field(0.5, ge=0, le=1, description="Freeze BN statistics after this fraction of the QAT steps.")
    freeze_observers_after: FiniteFloat = Field(0.75, ge=0, le=1, description="Freeze quantiser ranges after this fraction of the QAT steps.")
    keep_float: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field([], max_length=1000, description="Conv/FC layers left in float in every int8 file, by module name or glob (`features.block7.pw.conv`, `features.block1*`, `classifier`; `edgekit analyze` ranks them). The int8 kernel check then expects exactly these as float kernels. A name or glob that matches no layer is an error. Both backends (NNCF: the layer's weight quantizer is removed, its input stays int8).")
    max_drop: Optional[FiniteFloat] = Field(None, ge=0, le=100, description="Also keep in float, one at a time, the layers the sensitivity ranking puts worst, until PTQ's top-1 drop vs float is at most this many points (torch, simulated, on `quantize.sensitivity_samples` test images); the steps are in the report. The search runs on the PT2E graph whichever backend the build uses; the layers it picks are then kept float in that backend.")
    sensitivity_samples: StrictInt = Field(1000, ge=10, le=MAX_COUNT, description="Test images (the first of the evaluation subset) that the sensitivity ranking and the `max_drop` search evaluate on.")


# read from the format table, so a new format row is a valid value with no edit here
FormatName = Literal[tuple(FORMATS)]
RuntimeName = Literal[tuple(runtime_names())]


class ExportSection(Section):
    formats: list[FormatName] = Field([name for name, fmt in FORMATS.items() if fmt.default], min_length=1, description="File formats to export.")
    tflite_io: Literal["int8", "float32"] = Field("int8", description="Input/output tensor type of int8 .tflite files. `float32` adds a QUANTIZE op at the input and a DEQUANTIZE at the output (like TFLiteConverter's `inference_input_type=tf.float32`) for apps that feed float images; outputs are identical.")
    onnx_opset: StrictInt = Field(17, ge=17, le=30, description="ONNX opset (17 or newer).")
    require_int8_kernels: bool = Field(True, description="Fail the build when a conv or matmul of an int8 model runs as a float kernel. Needs `evaluate.runtimes` to cover every format in `export.formats`.")


class EvaluateSection(Section):
    runtimes: list[RuntimeName] = Field(["onnxruntime", "litert"], description="Runtimes that evaluate the exported files.")
    threads: Threads = Field(2, description="Runtime threads during evaluation.")
    max_samples: Optional[StrictInt] = Field(None, ge=1, le=MAX_COUNT, description="Evaluate on at most this many test images (default: `data.max_eval_samples`, else all).")
    per_layer: bool = Field(True, description="Measure every conv/FC output of each int8 file inside its runtime against the float model (SQNR, relative RMSE) on the first 64 test images; `per_layer` in the report.")


class ProfileSection(Section):
    devices: list[str] = Field(["devices/host.yaml"], description="Device profiles (`devices/*.yaml`) to profile on, in order; each must exist when the recipe loads.")
    threads: Optional[list[Threads]] = Field(None, min_length=1, description="Thread counts to measure with (default: each device profile's own list).")


class GateSection(Section):
    max_int8_drop: FiniteFloat = Field(1.0, ge=0, le=100, description="Largest allowed int8 top-1 drop vs float in the same report, in points, per runtime.")
    baseline: Optional[str] = Field(None, description="Baseline report to compare against (must exist when given).")
    max_drop_vs_baseline: FiniteFloat = Field(0.5, ge=0, le=100, description="Largest allowed top-1 drop vs the baseline, in points.")
    max_latency_ratio_increase: Optional[FiniteFloat] = Field(None, ge=0, le=1000, description="Largest allowed relative rise of int8/float latency ratio vs the baseline (0.1 = 10%).")
    max_size_increase: Optional[FiniteFloat] = Field(None, ge=0, le=1000, description="Largest allowed relative growth of an artifact's size vs the baseline.")


class Recipe(Section):
    name: Optional[str] = Field(None, description="Build name, a plain name (letters, digits, `_ . + -`; no `/`, no `..`, not starting with `.` or `-`); default: the recipe file's stem. The build directory is `builds/<name>`.")
    seed: StrictInt = Field(0, ge=0, le=2**32 - 1, description="Seed for subsets, initialisation, shuffling and augmentation.")
    model: ModelSection = Field(default_factory=ModelSection, description="The network.")
    data: DataSection = Field(default_factory=DataSection, description="Dataset and preprocessing.")
    train: TrainSection = Field(default_factory=TrainSection, description="Float training.")
    quantize: QuantizeSection = Field(default_factory=QuantizeSection, description="Quantisation (QAT/PTQ).")
    export: ExportSection = Field(default_factory=ExportSection, description="Exported files.")
    evaluate: EvaluateSection = Field(default_factory=EvaluateSection, description="Accuracy inside the runtimes.")
    profile: ProfileSection = Field(default_factory=ProfileSection, description="Latency on devices.")
    gate: GateSection = Field(default_factory=GateSection, description="CI accuracy-regression gate thresholds.")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: Optional[str]) -> Optional[str]:
        if name is not None and (not _PLAIN_NAME.fullmatch(name) or ".." in name):
            raise ValueError("must be a plain name: letters, digits, '_', '.', '+', '-', at most 100, not starting "
                             "with '.' or '-', no '/' or '..' (it names the folder builds/<name>)")
        return name

    @model_validator(mode="after")
    def _normalize_from_weights(self) -> "Recipe":
        """``data.normalize: from_weights`` replaces data.mean/std with the weights file's (a missing file is
        left to the path check that follows validation)."""
        if self.data.normalize != "from_weights":
            return self
        from edgekit.data.normalize import weights_normalization

        if self.model.weights is None:
            raise _error("needs_weights", ("data", "normalize"), "from_weights needs model.weights", "from_weights")
        preprocessing = weights_normalization(self.model.weights, self.model.weights_format)
        if preprocessing is not None:
            self.data.mean, self.data.std = list(preprocessing.mean), list(preprocessing.std)
        return self

    @model_validator(mode="after")
    def _kept_layers_exist(self) -> "Recipe":
        """Every ``quantize.keep_float`` name or glob names a conv/FC of the model."""
        config = self.quantize
        if not config.keep_float and config.max_drop is None:
            return self
        from edgekit.errors import UserInputError
        from edgekit.models import create_model
        from edgekit.quantize.keep_float import resolve_keep_float

        section = self.model
        model = create_model(section.arch, num_classes=section.num_classes, activation=section.activation,
                             dropout=section.dropout, **section.options)
        try:
            resolve_keep_float(model, config.keep_float)
        except UserInputError as exc:
            raise _error("keep_float_unknown", ("quantize", "keep_float"),
                         str(exc).removeprefix("quantize.keep_float: "), config.keep_float) from None
        return self

    @model_validator(mode="after")
    def _int8_check_covers_every_format(self) -> "Recipe":
        """``export.require_int8_kernels`` is checked by the runtimes that evaluate: each format needs one."""
        from edgekit.formats import FORMATS

        if not self.export.require_int8_kernels:
            return self
        for fmt in self.export.formats:
            loaders = FORMATS[fmt].runtimes
            if not set(loaders) & set(self.evaluate.runtimes):
                raise _error("int8_check_coverage", ("evaluate", "runtimes"),
                             f"export.formats has {fmt}, which only {' or '.join(loaders)} loads, so with "
                             f"export.require_int8_kernels its int8 kernels would go unchecked: add {loaders[0]} "
                             f"to evaluate.runtimes or set export.require_int8_kernels: false", self.evaluate.runtimes)
        return self
