"""The recipe of the real sweeps' points (local and Ray): a few seconds of training on a real Fashion-MNIST
slice, PTQ, ONNX evaluated in onnxruntime, profiled on this machine with host-smoke at 1 thread."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import tiny_recipe_data


def tiny_sweep_recipe(tmp_path: Path, **sections) -> Path:
    """Write the recipe (``sections`` update it) to ``tmp_path/tiny.yaml``; its device path is relative to the repo."""
    data = tiny_recipe_data(data={"max_train_samples": 256, "max_eval_samples": 128},
                            quantize={"method": "ptq", "calibration_batches": 2},
                            export={"formats": ["onnx"]}, evaluate={"runtimes": ["onnxruntime"], "threads": 1},
                            profile={"devices": ["devices/host-smoke.yaml"], "threads": [1]})
    for section, values in sections.items():
        data[section].update(values)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(json.dumps(data))  # JSON is YAML
    return recipe
