import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgekit.recipe import validate

os.environ.setdefault("EDGEKIT_NO_PROGRESS", "1")
# NNCF compiles a C++ extension on first use; on a loaded 2-core machine that exceeds its 60 s default.
os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "0")

REPO = Path(__file__).resolve().parent.parent
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def tiny_recipe_data(**sections) -> dict:
    """A recipe that trains in a few seconds on a real Fashion-MNIST slice."""
    data = {
        "name": "tiny",
        "model": {"alpha": 0.25, "resolution": 32, "num_classes": 10},
        "data": {"max_train_samples": 512, "max_eval_samples": 256},
        "train": {"epochs": 1, "batch_size": 32, "lr": 0.004, "checkpoint_every_steps": 4, "threads": 1},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return data


@pytest.fixture
def tiny_recipe():
    def make(**sections):
        return validate(tiny_recipe_data(**sections), source="<test>")

    return make


def _why_no_network_namespace() -> str | None:
    if os.geteuid() != 0:
        return "not root: the test needs `unshare --net` to keep torchrun's TCPStore (it listens on every interface) on loopback"
    missing = [tool for tool in ("unshare", "nsenter", "ip") if shutil.which(tool) is None]
    return f"no {' or '.join(missing)} on PATH" if missing else None


@pytest.fixture(scope="session")
def loopback_only() -> list[str]:
    """A command prefix that runs a process in a network namespace where only ``lo`` is up.

    torchrun's rendezvous store binds ``*:PORT`` whatever the endpoint's host, so a test that starts it
    must not do so in the machine's own namespace. Processes started with this prefix share one namespace
    (two "nodes" can meet in it) and this machine's files and process ids."""
    why_not = _why_no_network_namespace()
    if why_not:
        pytest.skip(why_not)
    holder = subprocess.Popen(["unshare", "--net", "sh", "-c", "ip link set lo up && echo up && exec sleep infinity"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if holder.stdout.readline().strip() != "up":
            pytest.skip(f"could not make a network namespace: {holder.stderr.read().strip()[-300:]}")
        yield ["nsenter", f"--net=/proc/{holder.pid}/ns/net", "--"]
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture(autouse=True, scope="session")
def _needs_fashion_mnist():
    if not (FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.exit("Fashion-MNIST is missing: run `bash scripts/setup.sh --dev` (installs dataset-fashion-mnist)", 2)


# --- one trained model for every test package -------------------------------------------------------

TINY_RESOLUTION = 32
TINY_MEAN = TINY_STD = [0.5, 0.5, 0.5]
TINY_TRAIN_IMAGES, TINY_TEST_IMAGES = 6400, 500


@dataclass
class TrainedTiny:
    """MobileNet v1 alpha 0.25 at 32x32, 200 SGD steps of 32 Fashion-MNIST images (~70% top-1): trained
    once per session and shared by the quantize, runtimes and targets tests, which export it as they need."""

    state: dict
    train_set: object  # ImageSet, 6400 images
    test_set: object  # ImageSet, 500 images
    transform: object  # BatchTransform without augmentation

    def model(self):
        """A fresh copy in eval mode: quantizers and converters may change the model they are given."""
        from edgekit.models import create_model

        model = create_model("mobilenet_v1", alpha=0.25, num_classes=10)
        model.load_state_dict(self.state)
        return model.eval()


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory) -> TrainedTiny:
    import torch

    from edgekit.data import BatchTransform, build_datasets
    from edgekit.models import create_model
    from edgekit.recipe.schema import DataSection, TrainSection
    from edgekit.train import configure_torch, train

    threads_before = torch.get_num_threads()
    configure_torch(1)  # one core: the machine is shared
    torch.manual_seed(0)
    try:
        train_set, test_set = build_datasets(
            DataSection(max_train_samples=TINY_TRAIN_IMAGES, max_eval_samples=TINY_TEST_IMAGES), TINY_RESOLUTION, seed=0)
        transform = BatchTransform(TINY_RESOLUTION, TINY_MEAN, TINY_STD, augment=False)
        model = create_model("mobilenet_v1", alpha=0.25, num_classes=10)
        config = TrainSection(epochs=1, batch_size=32, lr=0.01, device="cpu", threads=1, channels_last=False)
        folder = tmp_path_factory.mktemp("trained-tiny")
        train(model, train_set, transform, config, seed=0, checkpoint_path=folder / "train.pt", checkpoint_key="tiny")
    finally:
        torch.set_num_threads(threads_before)
    state = {key: value.clone() for key, value in model.state_dict().items()}
    return TrainedTiny(state, train_set, test_set, transform)


@pytest.fixture(scope="session")
def models(tmp_path_factory, trained_tiny):
    """The trained model's files (float/int8 ONNX and TFLite, a real .npz), each built on first use and
    shared by the targets and profiling tests."""
    from targets.conftest_models import Models

    return Models(tmp_path_factory.mktemp("target-models"), trained_tiny)


# --- the fast lane: `pytest -m "not slow"` -----------------------------------------------------------

#: fixtures that train, build or export real models
SLOW_FIXTURES = {"trained_tiny", "models", "built", "recorded_build", "real_report", "full_report"}
#: modules that run an emulator, a simulator, a browser, an ssh server or real builds in every test
SLOW_MODULES = {
    "test_emulated.py", "test_emulated_harness.py", "test_qnn.py", "test_ssh.py", "test_browser.py",
    "test_export.py", "test_export_io.py", "test_pipeline.py", "test_train.py", "test_killed_build.py",
    "test_sweep_real.py", "test_stage_keys.py", "test_lock.py",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(item.fixturenames) or item.path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
