"""edgekit.artifacts: byte-reproducible checkpoints and outputs that honour the umask."""

import os
import stat
import subprocess
import sys
import tempfile

import pytest
import torch

from edgekit.artifacts import current_umask, save_torch, sha256_file, write_atomically, write_json

# Builds a small model's state dict from a fixed seed and saves it with save_torch to argv[1].
SAVE_SCRIPT = """
import sys, torch
from edgekit.artifacts import save_torch
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.Linear(36, 2))
save_torch(sys.argv[1], {"step": 7, "model": model.state_dict()})
"""


def _state() -> dict:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                                torch.nn.Linear(36, 2))
    return {"step": 7, "model": model.state_dict()}


@pytest.fixture
def umask():
    """Set the process umask for one test, then restore it."""
    saved = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(saved)


def test_the_same_state_saved_to_two_paths_gives_identical_bytes(tmp_path):
    first = save_torch(tmp_path / "a" / "model.pt", _state())
    second = save_torch(tmp_path / "b" / "other-name.pt", _state())
    assert first.read_bytes() == second.read_bytes()


def test_a_rewritten_checkpoint_keeps_its_hash(tmp_path):
    path = tmp_path / "train" / "model.pt"
    save_torch(path, _state())
    before = sha256_file(path)
    save_torch(path, _state())
    assert sha256_file(path) == before


@pytest.mark.slow
def test_two_processes_write_identical_bytes(tmp_path):
    paths = [tmp_path / "one.pt", tmp_path / "two" / "model.pt"]
    for path in paths:
        subprocess.run([sys.executable, "-c", SAVE_SCRIPT, str(path)], check=True, timeout=120)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    save_torch(tmp_path / "here.pt", _state())
    assert (tmp_path / "here.pt").read_bytes() == paths[0].read_bytes()


def test_a_saved_checkpoint_loads_back_with_weights_only(tmp_path):
    state = _state()
    loaded = torch.load(save_torch(tmp_path / "model.pt", state), weights_only=True)
    assert loaded["step"] == 7
    assert loaded["model"].keys() == state["model"].keys()
    assert all(torch.equal(loaded["model"][key], value) for key, value in state["model"].items())


def test_different_content_gives_different_bytes(tmp_path):
    state = _state()
    changed = {**state, "step": 8}
    assert save_torch(tmp_path / "a.pt", state).read_bytes() != save_torch(tmp_path / "b.pt", changed).read_bytes()


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _replace_with_new_file(tmp):
    """A writer that, like some exporters, puts a new file where it was told to write."""
    handle, other = tempfile.mkstemp(dir=tmp.parent)
    os.write(handle, b"model")
    os.close(handle)
    os.replace(other, tmp)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600), (0o002, 0o664)],
                         ids=["022", "027", "077", "002"])
def test_outputs_honour_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    written = [
        write_json(tmp_path / "report.json", {"a": 1}),
        write_atomically(tmp_path / "report.html", lambda tmp: tmp.write_text("<html></html>")),
        save_torch(tmp_path / "train" / "model.pt", _state()),
        write_atomically(tmp_path / "int8" / "model.tflite", _replace_with_new_file),
        write_json(tmp_path / "baselines" / "smoke.json", {"checks": []}),
    ]
    assert {path.name: _mode(path) for path in written} == {path.name: expected for path in written}


def test_an_existing_file_rewritten_gets_the_umask_mode_too(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "report.json"
    path.write_text("{}")
    path.chmod(0o600)
    write_json(path, {"a": 1})
    assert _mode(path) == 0o644


def test_current_umask_reads_without_changing_it(umask):
    umask(0o027)
    assert current_umask() == 0o027
    assert current_umask() == 0o027
    assert os.umask(0o027) == 0o027


def test_no_temporary_file_is_left_behind(tmp_path):
    save_torch(tmp_path / "model.pt", _state())
    write_json(tmp_path / "report.json", {})
    with pytest.raises(RuntimeError):
        write_atomically(tmp_path / "broken.bin", lambda tmp: (_ for _ in ()).throw(RuntimeError("writer failed")))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.pt", "report.json"]
