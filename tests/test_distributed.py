"""Data-parallel training's pieces that need no second process: the sampler's shares of the global batch,
the rendezvous checks, the flags, the one-line failure messages, and mixed precision in one process."""

import json
import os
import time

import pytest
import torch

from edgekit.cli import main
from edgekit.errors import RecipeError, UserInputError
from edgekit.recipe import validate
from edgekit.recipe.schema import TrainSection
from edgekit.train import distributed
from edgekit.train.distributed import Rendezvous, check_rendezvous, failure_error
from edgekit.train.loop import _mix

from conftest import REPO, tiny_recipe_data


def test_one_process_keeps_the_single_process_shuffle():
    """A build without train.distributed trains on exactly the batches it always has (resume and caches)."""
    for epoch in range(3):
        seed = _mix(5, epoch, 0)
        expected = torch.randperm(1000, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(distributed.rank_indices(1000, seed), expected)


@pytest.mark.parametrize("processes", [2, 4])
def test_the_ranks_share_each_global_batch_of_the_single_process_run(processes):
    size, global_batch, seed = 1003, 64, _mix(0, 1, 0)
    single = distributed._rank_indices(size, seed, 0, 1)
    shares = [distributed._rank_indices(size, seed, rank, processes) for rank in range(processes)]
    per_rank = global_batch // processes
    all_indices = torch.cat(shares)
    assert len(set(all_indices.tolist())) == len(all_indices), "the ranks' shares overlap"
    for batch in range(size // global_batch):
        together = torch.cat([share[batch * per_rank:(batch + 1) * per_rank] for share in shares])
        assert sorted(together.tolist()) == sorted(single[batch * global_batch:(batch + 1) * global_batch].tolist())


def test_the_global_batch_must_split_evenly():
    with pytest.raises(RecipeError, match="train.batch_size: the global batch 64 does not split evenly between 3"):
        validate(tiny_recipe_data(train={"batch_size": 64, "distributed": {"nproc_per_node": 3}}), source="<test>")
    validate(tiny_recipe_data(train={"batch_size": 64, "distributed": {"nproc_per_node": 2, "nnodes": 2}}),
             source="<test>")
    assert distributed.per_process_batch(64, 4) == 16


@pytest.mark.parametrize("nnodes, rendezvous, message", [
    (2, Rendezvous(0, None), "--nnodes 2: every node needs --rdzv-endpoint HOST:PORT"),
    (2, Rendezvous(2, "10.0.0.1:29400"), "--node-rank 2: must be below --nnodes (2)"),
    (1, Rendezvous(0, "10.0.0.1"), "--rdzv-endpoint '10.0.0.1': expected HOST:PORT"),
    (1, Rendezvous(0, "10.0.0.1:99999"), "--rdzv-endpoint '10.0.0.1:99999': expected HOST:PORT"),
])
def test_rendezvous_errors_name_the_flag(nnodes, rendezvous, message):
    config = TrainSection(distributed={"nnodes": nnodes})
    with pytest.raises(UserInputError) as caught:
        check_rendezvous(config, rendezvous)
    assert str(caught.value).startswith(message)


def test_flags_set_the_recipe_and_bad_values_are_one_line(tmp_path, capsys):
    assert main(["build", str(REPO / "recipes/smoke.yaml"), "--nproc-per-node", "0", "--out", str(tmp_path / "b")]) == 2
    assert capsys.readouterr().err.strip() == "edgekit: error: --nproc-per-node 0: must be at least 1"
    assert main(["build", str(REPO / "recipes/smoke.yaml"), "--nproc-per-node", "3", "--out", str(tmp_path / "b")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("edgekit: error: recipes/smoke.yaml:12: train.batch_size: the global batch 64") or \
        "train.batch_size: the global batch 64 does not split evenly between 3 processes" in error, error
    assert "\n" not in error
    assert not (tmp_path / "b").exists()


def test_torchrun_command_rendezvous_on_the_loopback_with_a_free_port(tmp_path):
    config = TrainSection(threads=1, device="cpu", distributed={"nproc_per_node": 2})
    arguments = distributed.torchrun_arguments(config, Rendezvous(), tmp_path / "job.json", tmp_path / "node")
    endpoint = arguments[arguments.index("--rdzv-endpoint") + 1]
    assert endpoint.startswith("127.0.0.1:") and int(endpoint.split(":")[1]) > 0
    assert arguments[arguments.index("--nproc-per-node") + 1] == "2"
    assert arguments[arguments.index("--max-restarts") + 1] == "0"
    assert arguments[-3:] == [str(tmp_path / "job.json"), "gloo", str(tmp_path / "node")]


def _failure_folder(tmp_path, errors=(), ranks=None, kind="train"):
    (tmp_path / "errors").mkdir()
    (tmp_path / "job.json").write_text(json.dumps({"kind": kind}))
    for error in errors:
        (tmp_path / "errors" / f"rank-{error['rank']}.json").write_text(json.dumps(error))
    if ranks is not None:
        (tmp_path / "failures.json").write_text(json.dumps({"ranks": ranks}))
    return tmp_path


def test_the_first_rank_to_fail_is_the_one_reported(tmp_path):
    now = time.time()
    folder = _failure_folder(tmp_path, errors=[
        {"rank": 0, "message": "RuntimeError: Connection closed by peer", "exit_code": 1, "time": now + 0.5,
         "traceback_file": "t0"},
        {"rank": 1, "message": "data.root: dataset folder not found", "exit_code": 2, "time": now,
         "traceback_file": "t1"}], kind="qat")
    error = failure_error(folder, TrainSection(distributed={"nproc_per_node": 2}), folder / "job.json")
    assert str(error).startswith("quantize (QAT) under torchrun: rank 1 of 2 failed: data.root: dataset folder not found")
    assert "rerun the same command to resume" in str(error) and "\n" not in str(error)
    assert error.exit_code == 2  # a rank's bad input stays bad input


def test_a_rank_killed_without_a_word_is_named_with_its_signal(tmp_path):
    folder = _failure_folder(tmp_path, ranks=[
        {"rank": 0, "exitcode": -15, "signal": "SIGTERM", "time": 20.0},
        {"rank": 1, "exitcode": -9, "signal": "SIGKILL", "time": 10.0}])
    error = failure_error(folder, TrainSection(distributed={"nproc_per_node": 2}), folder / "job.json")
    assert str(error).startswith("train under torchrun: rank 1 of 2 was killed by SIGKILL")
    assert error.exit_code == 1


def test_a_killed_rank_is_the_cause_even_when_its_peer_reported_the_broken_connection(tmp_path):
    folder = _failure_folder(tmp_path, errors=[
        {"rank": 0, "message": "RuntimeError: [gloo] Read error [127.0.0.1]:31971: Connection reset by peer",
         "exit_code": 1, "time": 5.0, "traceback_file": "t0"}],
        ranks=[{"rank": 0, "exitcode": 1, "signal": None, "time": 6.0},
               {"rank": 1, "exitcode": -9, "signal": "SIGKILL", "time": 7.0}])
    error = failure_error(folder, TrainSection(distributed={"nproc_per_node": 2}), folder / "job.json")
    assert str(error).startswith("train under torchrun: rank 1 of 2 was killed by SIGKILL"), str(error)


def test_ranks_torchrun_stopped_are_not_the_cause(tmp_path):
    folder = _failure_folder(tmp_path, errors=[
        {"rank": 1, "message": "ValueError: bad", "exit_code": 1, "time": 5.0, "traceback_file": "t1"}],
        ranks=[{"rank": 0, "exitcode": -15, "signal": "SIGTERM", "time": 6.0},
               {"rank": 1, "exitcode": 1, "signal": None, "time": 6.0}])
    error = failure_error(folder, TrainSection(distributed={"nproc_per_node": 2}), folder / "job.json")
    assert str(error).startswith("train under torchrun: rank 1 of 2 failed: ValueError: bad"), str(error)


def test_fp16_needs_cuda():
    from edgekit.train.loop import _mixed_precision

    if torch.cuda.is_available():
        pytest.skip("CUDA is present: fp16 is tested by the GPU benchmark")
    with pytest.raises(RecipeError, match="train.amp: fp16 needs a CUDA device"):
        _mixed_precision(TrainSection(amp="fp16"), torch.device("cpu"))


def test_fault_injection_raises_on_its_rank_and_step_only(monkeypatch):
    monkeypatch.setenv(distributed.FAULT_INJECTION_ENV, "0:3")
    hook = distributed.fault_injection()
    hook(2)
    with pytest.raises(RuntimeError, match="EDGEKIT_FAIL_RANK=0:3 after step 3"):
        hook(3)
    monkeypatch.setenv(distributed.FAULT_INJECTION_ENV, "1:3")
    distributed.fault_injection()(3)  # this process is rank 0


# --- train.amp and train.compile in one process ---------------------------------------------------------

def _tiny_training(tmp_path, **train_options):
    from edgekit.data import BatchTransform, build_split
    from edgekit.models import create_model
    from edgekit.recipe.schema import DataSection
    from edgekit.train import configure_torch, train

    threads = torch.get_num_threads()
    configure_torch(1)
    try:
        dataset = build_split(DataSection(max_train_samples=256), 32, 0, "train")
        transform = BatchTransform(32, [0.5] * 3, [0.5] * 3, augment=False)
        torch.manual_seed(0)
        model = create_model("mobilenet_v1", alpha=0.25, num_classes=10)
        config = TrainSection(epochs=0.5, batch_size=32, lr=0.01, device="cpu", threads=1, checkpoint_every_steps=2,
                              **train_options)
        result = train(model, dataset, transform, config, seed=0, checkpoint_path=tmp_path / "ckpt.pt",
                       checkpoint_key="amp")
    finally:
        torch.set_num_threads(threads)
    return model, result


@pytest.mark.slow
def test_bf16_autocast_trains_in_bfloat16_on_cpu(tmp_path):
    from torch.nn.modules.module import register_module_forward_hook

    seen = set()

    def record(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            seen.add(output.dtype)

    hook = register_module_forward_hook(record)
    try:
        model, result = _tiny_training(tmp_path, amp="bf16")
    finally:
        hook.remove()
    assert seen == {torch.bfloat16}, seen
    assert all(torch.isfinite(torch.tensor(point["loss"])) for point in result.history)
    assert all(param.dtype == torch.float32 for param in model.parameters()), "autocast keeps float32 weights"
    plain, _ = _tiny_training(tmp_path / "off", amp="off")
    assert not torch.equal(model.classifier.weight, plain.classifier.weight), "amp changed nothing"


@pytest.mark.slow
def test_compile_wraps_the_model_it_trains(tmp_path, monkeypatch):
    """train.compile hands the trained module to torch.compile (replaced here: on this 2-core CPU a real
    compilation of the smoke model's first step took 412 s; see test_compile_for_real)."""
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda module: compiled.append(module) or module)
    model, _ = _tiny_training(tmp_path, compile=True)
    assert compiled == [model]
    _tiny_training(tmp_path / "off", compile=False)
    assert compiled == [model]


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available() and os.environ.get("EDGEKIT_TEST_COMPILE") != "1",
                    reason="torch.compile of the smoke model took 412 s for its first step on this 2-core CPU; "
                           "runs with CUDA, or with EDGEKIT_TEST_COMPILE=1")
def test_compile_for_real(tmp_path):
    model, result = _tiny_training(tmp_path, compile=True)
    assert all(torch.isfinite(torch.tensor(point["loss"])) for point in result.history)
    assert not any(key.startswith("_orig_mod") for key in model.state_dict()), "checkpoints keep plain keys"
