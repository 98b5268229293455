"""The recipe schema: the one place where every option is defined, with its default and documentation.

A recipe is YAML with one section per pipeline stage. Sections that later stages fill in are defined
here already, so a recipe written today keeps validating tomorrow. ``docs/recipe.md`` and the README's
schema table are generated from these classes (``edgekit schema``); a test keeps them in sync.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

DEFAULT_FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"


class Section(BaseModel):
    """Base of every section: unknown keys are errors, values are checked on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSection(Section):
    arch: str = Field("mobilenet_v1", description="Model family from the registry (`edgekit.models.list_models()`).")
    alpha: float = Field(1.0, gt=0, le=4, description="Width multiplier α: every layer's channel count is scaled by it.")
    # allow_any_resolution stands before resolution: the resolution check reads it.
    allow_any_resolution: bool = Field(False, description="Accept a resolution that is not a multiple of 32 (the last feature map then has uneven borders).")
    resolution: int = Field(224, gt=0, le=1024, description="Input resolution ρ·224 in pixels (square). A multiple of 32 unless `allow_any_resolution`.")
    num_classes: int = Field(1000, ge=1, description="Number of output classes.")
    activation: Literal["relu", "relu6"] = Field("relu", description="Activation after every BN.")
    conv: Literal["separable", "standard"] = Field("separable", description="`separable`: depthwise-separable blocks; `standard`: full 3×3 convs (the paper's Conv MobileNet, Table 4).")
    shallow: bool = Field(False, description="Remove the five 14×14×512 blocks (the paper's shallow MobileNet, Table 5).")
    padding: Literal["symmetric", "same"] = Field("symmetric", description="Stride-2 padding: `symmetric` (PyTorch, 1 pixel each side) or `same` (TensorFlow SAME: bottom/right only).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout before the classifier.")
    weights: Optional[str] = Field(None, description="Path to a state dict to load (`weights_only=True`) before training; with `train.epochs: 0` it replaces training.")

    @field_validator("resolution")
    @classmethod
    def _resolution_multiple_of_32(cls, resolution: int, info: ValidationInfo) -> int:
        if resolution % 32 and not info.data.get("allow_any_resolution"):
            raise ValueError(
                f"resolution {resolution} is not a multiple of 32 (set model.allow_any_resolution: true to allow it)"
            )
        return resolution


class DataSection(Section):
    dataset: Literal["fashion_mnist", "imagefolder"] = Field("fashion_mnist", description="`fashion_mnist` (IDX files) or `imagefolder` (`train/` and `val/` class folders).")
    root: Optional[str] = Field(None, description=f"Dataset directory. Default for fashion_mnist: `{DEFAULT_FASHION_MNIST_ROOT}` (Debian's dataset-fashion-mnist).")
    max_train_samples: Optional[int] = Field(None, ge=1, description="Use a deterministic subset of this many training images (stratified by seed).")
    max_eval_samples: Optional[int] = Field(None, ge=1, description="Use a deterministic subset of this many test images.")
    mean: list[float] = Field([0.5, 0.5, 0.5], min_length=3, max_length=3, description="Per-channel normalisation mean (after scaling to [0, 1]).")
    std: list[float] = Field([0.5, 0.5, 0.5], min_length=3, max_length=3, description="Per-channel normalisation std.")
    augment: bool = Field(True, description="Light training augmentation: random shift by up to 1/8 of the image and horizontal flip.")


class TrainSection(Section):
    epochs: float = Field(2, ge=0, description="Float training epochs (fractions allowed). 0 with `model.weights` skips training.")
    batch_size: int = Field(64, ge=1, description="Training batch size.")
    eval_batch_size: int = Field(256, ge=1, description="Batch size for evaluation.")
    optimizer: Literal["sgd", "adamw"] = Field("adamw", description="Optimiser.")
    lr: float = Field(2e-3, gt=0, description="Peak learning rate.")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (AdamW beta1).")
    weight_decay: float = Field(5e-4, ge=0, description="Weight decay.")
    schedule: Literal["cosine", "onecycle", "constant"] = Field("onecycle", description="Learning-rate schedule over all steps.")
    warmup_fraction: float = Field(0.1, ge=0, lt=1, description="Share of the steps spent warming up (`onecycle`, `cosine`).")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Label smoothing of the cross-entropy loss.")
    threads: Optional[int] = Field(None, ge=1, description="CPU threads for torch (default: all cores).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="`auto` uses CUDA when present.")
    channels_last: bool = Field(True, description="Train in channels-last memory format (about 1.5x faster for MobileNets on x86 CPUs).")
    checkpoint_every_steps: int = Field(200, ge=1, description="Also checkpoint within an epoch every this many steps (resume granularity).")
    max_loss: float = Field(100.0, gt=0, description="Stop the build when the loss becomes NaN/inf or exceeds this.")


class QuantizeSection(Section):
    method: Literal["qat", "ptq", "none"] = Field("qat", description="`qat`: calibrate then fine-tune with fake quantisation; `ptq`: calibrate only; `none`: float only. Every build also makes the PTQ model.")
    backend: Literal["auto", "nncf", "pt2e"] = Field("auto", description="QAT backend. `auto` picks per export format (see docs).")
    weights: Literal["per_channel", "per_tensor"] = Field("per_channel", description="Weight quantisation granularity (symmetric int8).")
    activations: Literal["per_tensor"] = Field("per_tensor", description="Activation quantisation granularity (int8).")
    calibration_batches: int = Field(16, ge=1, description="Batches used to calibrate ranges.")
    epochs: float = Field(1, ge=0, description="QAT fine-tuning epochs.")
    lr: float = Field(1e-4, gt=0, description="QAT learning rate.")
    freeze_bn_after: float = Field(0.5, ge=0, le=1, description="Freeze BN statistics after this fraction of the QAT steps.")
    freeze_observers_after: float = Field(0.75, ge=0, le=1, description="Freeze quantiser ranges after this fraction of the QAT steps.")


class ExportSection(Section):
    formats: list[Literal["tflite", "onnx"]] = Field(["tflite", "onnx"], min_length=1, description="File formats to export.")
    tflite_io: Literal["int8", "float32"] = Field("int8", description="Input/output tensor type of int8 .tflite files. `float32` adds a QUANTIZE op at the input and a DEQUANTIZE at the output (like TFLiteConverter's `inference_input_type=tf.float32`) for apps that feed float images; outputs are identical.")
    onnx_opset: int = Field(17, ge=17, description="ONNX opset (17 or newer).")
    require_int8_kernels: bool = Field(True, description="Fail the build when a conv or matmul of an int8 model runs as a float kernel.")


class EvaluateSection(Section):
    runtimes: list[Literal["onnxruntime", "litert"]] = Field(["onnxruntime", "litert"], description="Runtimes that evaluate the exported files.")
    threads: int = Field(2, ge=1, description="Runtime threads during evaluation.")
    max_samples: Optional[int] = Field(None, ge=1, description="Evaluate on at most this many test images (default: `data.max_eval_samples`, else all).")


class ProfileSection(Section):
    devices: list[str] = Field(["devices/host.yaml"], description="Device profiles (`devices/*.yaml`) to profile on, in order.")
    threads: Optional[list[int]] = Field(None, description="Thread counts to measure with (default: each device profile's own list).")


class GateSection(Section):
    max_int8_drop: float = Field(1.0, ge=0, description="Largest allowed int8 top-1 drop vs float in the same report, in points, per runtime.")
    baseline: Optional[str] = Field(None, description="Baseline report to compare against.")
    max_drop_vs_baseline: float = Field(0.5, ge=0, description="Largest allowed top-1 drop vs the baseline, in points.")
    max_latency_ratio_increase: Optional[float] = Field(None, ge=0, description="Largest allowed relative rise of int8/float latency ratio vs the baseline (0.1 = 10%).")
    max_size_increase: Optional[float] = Field(None, ge=0, description="Largest allowed relative growth of an artifact's size vs the baseline.")


class Recipe(Section):
    name: Optional[str] = Field(None, description="Build name; default: the recipe file's stem. The build directory is `builds/<name>`.")
    seed: int = Field(0, ge=0, description="Seed for subsets, initialisation, shuffling and augmentation.")
    model: ModelSection = Field(default_factory=ModelSection, description="The network.")
    data: DataSection = Field(default_factory=DataSection, description="Dataset and preprocessing.")
    train: TrainSection = Field(default_factory=TrainSection, description="Float training.")
    quantize: QuantizeSection = Field(default_factory=QuantizeSection, description="Quantisation (QAT/PTQ).")
    export: ExportSection = Field(default_factory=ExportSection, description="Exported files.")
    evaluate: EvaluateSection = Field(default_factory=EvaluateSection, description="Accuracy inside the runtimes.")
    profile: ProfileSection = Field(default_factory=ProfileSection, description="Latency on devices.")
    gate: GateSection = Field(default_factory=GateSection, description="CI accuracy-regression gate thresholds.")
