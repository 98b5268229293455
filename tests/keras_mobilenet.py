"""Keras' real MobileNet (``keras.applications``, torch backend) with random weights, saved in both of Keras'
formats, with its logits on fixed inputs. Made in a subprocess: KERAS_BACKEND must be set before Keras is
imported, and the test process's torch settings stay untouched. No network: ``weights=None``."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

MAKE = r"""
import json, os, sys
os.environ["KERAS_BACKEND"] = "torch"
import keras, numpy as np

folder, alpha, size, classes, seed = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
keras.utils.set_random_seed(seed)
model = keras.applications.MobileNet(alpha=alpha, weights=None, input_shape=(size, size, 3), classes=classes,
                                     classifier_activation=None)
rng = np.random.default_rng(seed)
for layer in model.layers:  # statistics and affine terms away from 0/1, so that every one of them matters
    if isinstance(layer, keras.layers.BatchNormalization):
        count = layer.weights[0].shape[0]
        layer.set_weights([rng.uniform(0.5, 1.5, count), rng.normal(0, 0.2, count), rng.normal(0, 0.2, count),
                           rng.uniform(0.5, 1.5, count)])
    elif layer.name == "conv_preds":
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel * 4, rng.normal(0, 0.5, bias.shape)])
model.save_weights(os.path.join(folder, "keras.weights.h5"))
model.save(os.path.join(folder, "keras.h5"))  # the legacy HDF5 layout (layer_names / weight_names)
inputs = rng.uniform(-1, 1, (2, size, size, 3)).astype("float32")
logits = keras.ops.convert_to_numpy(model(inputs, training=False))
np.save(os.path.join(folder, "inputs_nhwc.npy"), inputs)
np.save(os.path.join(folder, "logits.npy"), logits)
bn = [layer.epsilon for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
json.dump({"keras": keras.__version__, "bn_eps": sorted(set(bn)), "params": int(model.count_params())},
          open(os.path.join(folder, "made.json"), "w"))
"""


def make_keras_mobilenet(folder: Path, alpha: float = 0.25, size: int = 64, classes: int = 10, seed: int = 0) -> dict:
    """Write keras.weights.h5, keras.h5, inputs_nhwc.npy and logits.npy into ``folder``; return their paths."""
    if importlib.util.find_spec("keras") is None:  # not imported here: Keras picks its backend at import
        pytest.skip("Keras is not installed (pip install 'edgekit[import]', pulled by [dev])")
    pytest.importorskip("h5py", reason="h5py is not installed (pip install 'edgekit[import]', pulled by [dev])")
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "KERAS_BACKEND": "torch", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", MAKE, str(folder), str(alpha), str(size), str(classes), str(seed)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    made = json.loads((folder / "made.json").read_text())
    return {"weights_h5": folder / "keras.weights.h5", "h5": folder / "keras.h5", "made": made,
            "inputs": np.load(folder / "inputs_nhwc.npy").transpose(0, 3, 1, 2).copy(),
            "logits": np.load(folder / "logits.npy")}
