"""Keras' MobileNet weights (.h5 and .weights.h5) in edgekit's mobilenet_v1: the same logits as Keras' own model."""

import shutil

import pytest
import torch

from edgekit.errors import WeightsError
from edgekit.models import create_model
from edgekit.models.import_weights import KERAS_TF_MODE, detect, read_weights
from edgekit.train import load_weights

from keras_mobilenet import make_keras_mobilenet

KERAS_OPTIONS = {"activation": "relu6", "padding": "same"}
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory):
    return make_keras_mobilenet(tmp_path_factory.mktemp("keras"), alpha=0.25, size=64, classes=10)


def edgekit_model(num_classes=10, alpha=0.25, **options):
    return create_model("mobilenet_v1", alpha=alpha, num_classes=num_classes, **{**KERAS_OPTIONS, **options}).eval()


def logits(model, inputs):
    with torch.no_grad():
        return model(torch.from_numpy(inputs)).numpy()


@pytest.mark.parametrize("layout", ["weights_h5", "h5"])
def test_keras_weights_give_the_keras_models_logits(keras_files, layout):
    path = keras_files[layout]
    assert detect(path) == "keras"
    model = edgekit_model()
    imported = load_weights(model, path, arch="mobilenet_v1", options=KERAS_OPTIONS)
    assert imported.num_classes == 10 and imported.preprocessing == KERAS_TF_MODE
    assert keras_files["made"]["bn_eps"] == [0.001]  # what the eps fold in the importer assumes
    difference = abs(logits(model, keras_files["inputs"]) - keras_files["logits"]).max()
    assert difference < TOLERANCE, f"{layout}: max |logit difference| {difference:.2e}"
    assert abs(keras_files["logits"]).max() > 0.5  # logits large enough for the tolerance to mean something


def test_keras2_save_weights_layout_loads_the_same(keras_files, tmp_path):
    """The files Keras publishes (Keras 2 ``save_weights``): layer groups at the root, names ending in ``:0``."""
    import h5py

    keras2 = tmp_path / "mobilenet_2_5_64_tf.h5"
    with h5py.File(keras_files["h5"], "r") as legacy, h5py.File(keras2, "w") as out:
        source = legacy["model_weights"]
        out.attrs["layer_names"] = source.attrs["layer_names"]
        for layer in source.attrs["layer_names"]:
            group = out.create_group(layer)
            names = [f"{name}:0".replace(f"{layer}/kernel", f"{layer}/depthwise_kernel" if "_dw_" in layer else f"{layer}/kernel")
                     for name in source[layer].attrs["weight_names"]]
            group.attrs["weight_names"] = names
            for old, new in zip(source[layer].attrs["weight_names"], names):
                group[new] = source[layer][old][()]
    model = edgekit_model()
    load_weights(model, keras2, options=KERAS_OPTIONS)
    assert abs(logits(model, keras_files["inputs"]) - keras_files["logits"]).max() < TOLERANCE


def test_the_logit_check_catches_a_wrong_mapping(keras_files):
    """Symmetric padding (what the recipe would compute without `padding: same`) and PyTorch's batch-norm eps
    without the fold each move the logits well beyond the tolerance: the check above can fail."""
    model = edgekit_model(padding="symmetric")
    load_weights(model, keras_files["weights_h5"])  # no options given: nothing checks the padding
    assert abs(logits(model, keras_files["inputs"]) - keras_files["logits"]).max() > 10 * TOLERANCE
    model = edgekit_model()
    load_weights(model, keras_files["weights_h5"])
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var -= 1e-3 - 1e-5  # undo the fold of Keras' eps 1e-3
    assert abs(logits(model, keras_files["inputs"]) - keras_files["logits"]).max() > 10 * TOLERANCE


def test_keras_weights_need_the_keras_architecture(keras_files):
    with pytest.raises(WeightsError, match=r"a Keras MobileNet \(\.weights\.h5\), which computes with "
                                           r"model\.activation: relu6; the recipe has relu"):
        load_weights(edgekit_model(activation="relu"), keras_files["weights_h5"], arch="mobilenet_v1",
                     options={"activation": "relu", "padding": "same"})
    with pytest.raises(WeightsError, match=r"model\.padding: same; the recipe has symmetric"):
        load_weights(edgekit_model(padding="symmetric"), keras_files["h5"], arch="mobilenet_v1",
                     options={"activation": "relu6", "padding": "symmetric"})
    with pytest.raises(WeightsError, match=r"a mobilenet_v1; model\.arch is mobilenet_v2"):
        load_weights(edgekit_model(), keras_files["h5"], arch="mobilenet_v2", options=KERAS_OPTIONS)


def test_another_width_names_the_first_tensor_that_does_not_fit(keras_files):
    with pytest.raises(WeightsError) as caught:
        load_weights(edgekit_model(alpha=0.5), keras_files["weights_h5"], options=KERAS_OPTIONS)
    message = str(caught.value)
    assert "\n" not in message
    assert message.endswith("conv1 kernel (3, 3, 3, 8) does not fit features.stem.conv.weight (16, 3, 3, 3) "
                            "(the file's stem has 8 channels: α 0.25)"), message


def test_other_class_count_loads_the_backbone_and_a_new_classifier(keras_files, capsys):
    reference = edgekit_model()
    load_weights(reference, keras_files["weights_h5"])
    model = edgekit_model(num_classes=3)
    fresh_classifier = {k: v.clone() for k, v in model.classifier.state_dict().items()}
    load_weights(model, keras_files["weights_h5"], options=KERAS_OPTIONS)
    said = capsys.readouterr().err.strip().splitlines()
    assert said == ["edgekit: note: model.weights: keras.weights.h5 has 10 classes, model.num_classes is 3: "
                    "loaded the backbone, initialised a new 3-class classifier"]
    assert all(torch.equal(v, reference.features.state_dict()[k]) for k, v in model.features.state_dict().items())
    assert all(torch.equal(v, fresh_classifier[k]) for k, v in model.classifier.state_dict().items())


def test_a_file_without_the_top_loads_the_backbone(keras_files, tmp_path, capsys):
    import h5py

    no_top = tmp_path / "no_top.h5"
    shutil.copy(keras_files["h5"], no_top)
    with h5py.File(no_top, "r+") as handle:  # what Keras' include_top=False files hold: no conv_preds
        root = handle["model_weights"]
        del root["conv_preds"]
        root.attrs["layer_names"] = [name for name in root.attrs["layer_names"] if name != "conv_preds"]
    imported = load_weights(edgekit_model(), no_top, options=KERAS_OPTIONS)
    assert imported.num_classes is None
    assert "no_top.h5 has no classifier, model.num_classes is 10" in capsys.readouterr().err


def test_unknown_layers_and_wrong_files_fail_in_one_line(keras_files, tmp_path):
    import h5py

    extra = tmp_path / "extra.weights.h5"
    shutil.copy(keras_files["weights_h5"], extra)
    with h5py.File(extra, "r+") as handle:
        handle["layers/dense/vars/0"] = torch.zeros(4, 2).numpy()
        handle["layers/dense/vars"].attrs["name"] = "my_head"
    with pytest.raises(WeightsError, match=r"Keras layer my_head \(kernel \(4, 2\)\) has no place in edgekit's mobilenet_v1"):
        read_weights(extra)
    unrelated = tmp_path / "unrelated.h5"
    with h5py.File(unrelated, "w") as handle:
        handle["x"] = [1.0]
    with pytest.raises(WeightsError, match=r"unrelated\.h5: an HDF5 file without Keras weights"):
        read_weights(unrelated)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(keras_files["h5"].read_bytes()[:4096])
    with pytest.raises(WeightsError, match=r"truncated\.h5: not a readable HDF5 file"):
        read_weights(truncated)
    with pytest.raises(WeightsError, match=r"not a loadable state dict"):
        read_weights(keras_files["h5"], "edgekit")  # model.weights_format overrides the guess
    flatbuffer = tmp_path / "mobilenet_v1.tflite"
    flatbuffer.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    with pytest.raises(WeightsError, match=r"mobilenet_v1\.tflite: a \.tflite file: edgekit does not read weights"):
        read_weights(flatbuffer)


def test_normalize_from_weights_takes_kerass_preprocessing_and_a_differing_recipe_is_warned(keras_files, capsys):
    from edgekit.recipe import validate
    from edgekit.stages import _load_recipe_weights, model_from_recipe

    model = {"alpha": 0.25, "num_classes": 10, "resolution": 64, **KERAS_OPTIONS, "weights": str(keras_files["h5"])}
    imagenet = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    taken = validate({"model": model, "data": {**imagenet, "normalize": "from_weights"}}, source="<test>")
    assert (taken.data.mean, taken.data.std) == ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
    differing = validate({"model": model, "data": imagenet}, source="<test>")
    _load_recipe_weights(model_from_recipe(differing), differing)
    assert capsys.readouterr().err.splitlines() == [
        "edgekit: warning: data.mean [0.485, 0.456, 0.406] / data.std [0.229, 0.224, 0.225] differ from the "
        "preprocessing of model.weights (Keras MobileNet: [-1, 1]: mean [0.5, 0.5, 0.5], std [0.5, 0.5, 0.5]); "
        "set data.normalize: from_weights to use it"]
    _load_recipe_weights(model_from_recipe(taken), taken)
    assert capsys.readouterr().err == ""
