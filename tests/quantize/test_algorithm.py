"""The framework-neutral parts of quantization: calibration data, the QAT schedule, backend choice, recipe errors."""

from __future__ import annotations

import pytest
import torch

from edgekit.data import BatchTransform, ImageSet
from edgekit.errors import RecipeError, UserInputError
from edgekit.pipeline import build
from edgekit.quantize import BACKEND_FORMATS, BACKENDS, check_backend_formats, get_backend, resolve_backend
from edgekit.quantize.algorithm import calibration_batches, qat_train_config
from edgekit.recipe.schema import QuantizeSection, TrainSection

FORMAT_CHOICES = [["tflite"], ["onnx"], ["tflite", "onnx"], ["onnx", "tflite"]]


def synthetic_set(size: int = 100) -> ImageSet:
    images = torch.randint(0, 256, (size, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    labels = torch.arange(size) % 10
    return ImageSet("synthetic", labels, [str(i) for i in range(10)], lambda indices: images[indices], "memory")


def transform(augment: bool = False) -> BatchTransform:
    return BatchTransform(32, [0.5] * 3, [0.5] * 3, augment=augment)


class TestCalibrationBatches:
    def test_same_seed_same_batches(self):
        first = list(calibration_batches(synthetic_set(), transform(), 16, 3, seed=4))
        second = list(calibration_batches(synthetic_set(), transform(), 16, 3, seed=4))
        assert len(first) == 3 and all(torch.equal(a, b) for a, b in zip(first, second))

    def test_another_seed_other_images(self):
        first = next(calibration_batches(synthetic_set(), transform(), 16, 1, seed=4))
        other = next(calibration_batches(synthetic_set(), transform(), 16, 1, seed=5))
        assert not torch.equal(first, other)

    def test_batches_are_preprocessed_like_evaluation(self):
        batch = next(calibration_batches(synthetic_set(), transform(), 16, 1, seed=0))
        assert batch.shape == (16, 3, 32, 32) and batch.dtype == torch.float32
        assert batch.min() >= -1 and batch.max() <= 1

    def test_never_augmented(self):
        plain = list(calibration_batches(synthetic_set(), transform(augment=False), 16, 2, seed=0))
        with_augment = list(calibration_batches(synthetic_set(), transform(augment=True), 16, 2, seed=0))
        assert all(torch.equal(a, b) for a, b in zip(plain, with_augment))

    def test_stops_at_the_end_of_the_dataset(self):
        batches = list(calibration_batches(synthetic_set(40), transform(), 16, 10, seed=0))
        assert [len(batch) for batch in batches] == [16, 16, 8]

    def test_distinct_images(self):
        images = torch.cat(list(calibration_batches(synthetic_set(40), transform(), 16, 10, seed=0)))
        assert len(torch.unique(images.flatten(1), dim=0)) == 40


def test_qat_train_config_takes_epochs_and_lr_from_the_quantize_section():
    train = TrainSection(epochs=5, lr=0.01, schedule="onecycle", warmup_fraction=0.2, channels_last=True,
                         batch_size=48, optimizer="sgd", weight_decay=1e-3)
    fine_tune = qat_train_config(train, QuantizeSection(epochs=0.5, lr=3e-5))
    assert (fine_tune.epochs, fine_tune.lr, fine_tune.schedule, fine_tune.warmup_fraction) == (0.5, 3e-5, "cosine", 0.0)
    assert fine_tune.channels_last is False  # fake quantizers train in the default memory format
    assert (fine_tune.batch_size, fine_tune.optimizer, fine_tune.weight_decay) == (48, "sgd", 1e-3)
    assert (train.epochs, train.lr, train.schedule) == (5, 0.01, "onecycle"), "the float config is not changed"


class TestBackendRegistry:
    def test_builtins(self):
        assert {"pt2e", "nncf"} <= set(BACKENDS)
        for name in ("pt2e", "nncf"):
            backend = get_backend(name)
            assert backend.name == name and backend.formats

    def test_the_capability_table_matches_the_backends(self):
        assert set(BACKEND_FORMATS) == set(BACKENDS)
        for name, formats in BACKEND_FORMATS.items():
            assert tuple(formats) == get_backend(name).formats

    def test_unknown_backend_lists_the_available_ones(self):
        with pytest.raises(UserInputError, match=r"quantize\.backend: unknown backend 'tensorrt' \(available: .*pt2e") as error:
            get_backend("tensorrt")
        assert "nncf" in str(error.value)

    def test_typo_gets_a_suggestion(self):
        with pytest.raises(UserInputError) as error:
            get_backend("nnfc")
        assert error.value.hint == "did you mean 'nncf'?"

    @pytest.mark.parametrize("formats", FORMAT_CHOICES)
    def test_auto_picks_a_backend_that_writes_every_format(self, formats):
        assert set(formats) <= set(get_backend(resolve_backend("auto", formats)).formats)

    def test_an_explicit_backend_is_kept(self):
        assert resolve_backend("nncf", ["onnx"]) == "nncf"
        assert resolve_backend("pt2e", ["onnx"]) == "pt2e"


class TestBackendFormats:
    @pytest.mark.parametrize("backend, formats", [("pt2e", ["tflite", "onnx"]), ("nncf", ["onnx"]),
                                                  ("auto", ["tflite", "onnx"])])
    def test_supported(self, backend, formats):
        check_backend_formats(backend, formats)

    @pytest.mark.parametrize("formats", [["tflite"], ["onnx", "tflite"]])
    def test_nncf_cannot_write_tflite(self, formats):
        with pytest.raises(UserInputError, match=r"quantize\.backend: nncf cannot write tflite") as error:
            check_backend_formats("nncf", formats)
        assert "pt2e" in str(error.value)

    def test_unknown_backend(self):
        with pytest.raises(UserInputError, match="unknown backend"):
            check_backend_formats("tensorrt", ["onnx"])

    def test_a_build_stops_before_any_stage(self, tiny_recipe, tmp_path):
        recipe = tiny_recipe(quantize={"backend": "nncf"}, export={"formats": ["tflite"]})
        with pytest.raises(UserInputError, match="nncf cannot write tflite"):
            build(recipe, tmp_path / "build", log=lambda message: None)
        assert not (tmp_path / "build").exists()


@pytest.mark.parametrize("quantize, message", [
    ({"weights": "per_row"}, r"<test>: quantize\.weights: .*'per_channel'.*'per_tensor'.*\(got 'per_row'\)"),
    ({"activations": "per_channel"}, r"quantize\.activations: .*'per_tensor'"),
    ({"backend": "tensorrt"}, r"quantize\.backend: .*'auto'.*'nncf'.*'pt2e'"),
    ({"method": "dynamic"}, r"quantize\.method: .*'qat'"),
    ({"freeze_bn_after": 1.5}, r"quantize\.freeze_bn_after: .*less than or equal to 1"),
    ({"calibration_batches": 0}, r"quantize\.calibration_batches: .*greater than or equal to 1"),
    ({"lr": 0}, r"quantize\.lr: .*greater than 0"),
    ({"observer": "minmax"}, r"unknown key 'quantize\.observer' in quantize"),
    ({"calibration_batch": 4}, r"unknown key 'quantize\.calibration_batch' .*did you mean 'calibration_batches'"),
])
def test_bad_quantize_options_name_the_key(tiny_recipe, quantize, message):
    with pytest.raises(RecipeError, match=message):
        tiny_recipe(quantize=quantize)
