"""``edgekit build --out``: a build directory that cannot be one is refused up front, in one line, exit 2."""

import os
from pathlib import Path

import pytest
import yaml

import edgekit.pipeline
from conftest import REPO, tiny_recipe_data
from edgekit.artifacts import make_output_dir
from edgekit.cli import main
from edgekit.errors import UserInputError


@pytest.fixture
def recipe(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    # absolute device path: some tests run in another working directory
    path.write_text(yaml.safe_dump(tiny_recipe_data(profile={"devices": [str(REPO / "devices" / "host.yaml")]})))
    return path


@pytest.fixture
def no_build(monkeypatch):
    """Fail the test if a stage starts: every check here must come before the first one."""
    def run_stages(*args, **kwargs):
        pytest.fail("the build started")

    monkeypatch.setattr(edgekit.pipeline, "run_stages", run_stages)


def _refused(capsys, argv) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    error = captured.err.rstrip("\n")
    assert "\n" not in error and "Traceback" not in error
    assert error.startswith("edgekit: error: ")
    return error.removeprefix("edgekit: error: ")


def test_out_at_a_file(tmp_path, recipe, capsys, no_build):
    target = tmp_path / "report.txt"
    target.write_text("not a directory")
    error = _refused(capsys, ["build", str(recipe), "--out", str(target)])
    assert error == f"--out {target}: is a file, not a directory"
    assert target.read_text() == "not a directory"


def test_out_below_a_file(tmp_path, recipe, capsys, no_build):
    target = tmp_path / "report.txt"
    target.write_text("not a directory")
    error = _refused(capsys, ["build", str(recipe), "--out", str(target / "deeper" / "build")])
    assert error == f"--out {target / 'deeper' / 'build'}: {target} is a file, not a directory"


def test_out_below_a_file_that_even_root_cannot_write(recipe, capsys, no_build):
    error = _refused(capsys, ["build", str(recipe), "--out", "/proc/version/build"])
    assert error == "--out /proc/version/build: /proc/version is a file, not a directory"


@pytest.mark.skipif(not os.path.isdir("/sys"), reason="needs /sys (Linux), where nobody can create a directory")
def test_out_where_nobody_can_create_a_directory(recipe, capsys, no_build):
    error = _refused(capsys, ["build", str(recipe), "--out", "/sys/edgekit-build"])
    assert error.startswith("--out /sys/edgekit-build: cannot create the directory: ")


def _read_only_dir(tmp_path) -> Path:
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    if os.access(folder, os.W_OK):
        folder.chmod(0o700)
        pytest.skip("this user writes into a mode 0500 directory anyway (root); the /sys test covers it")
    return folder


def test_out_in_a_read_only_directory(tmp_path, recipe, capsys, no_build):
    folder = _read_only_dir(tmp_path)
    try:
        error = _refused(capsys, ["build", str(recipe), "--out", str(folder / "build")])
    finally:
        folder.chmod(0o700)
    assert error.startswith(f"--out {folder / 'build'}: cannot create the directory: Permission denied")


def test_out_is_a_read_only_directory(tmp_path, recipe, capsys, no_build):
    folder = _read_only_dir(tmp_path)
    try:
        error = _refused(capsys, ["build", str(recipe), "--out", str(folder)])
    finally:
        folder.chmod(0o700)
    assert error == f"--out {folder}: cannot write in the directory: permission denied"


def test_the_default_build_directory_is_checked_too(tmp_path, recipe, capsys, no_build, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("builds").write_text("a file where the builds go")
    error = _refused(capsys, ["build", str(recipe)])
    assert error == f"build directory {Path('builds') / 'tiny'}: builds is a file, not a directory"


def test_the_default_build_directory_is_builds_slash_the_recipe_name(tmp_path, recipe, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seen = {}

    def run_stages(stages, context, **options):
        seen["out_dir"] = context.out_dir
        raise UserInputError("stop here")

    monkeypatch.setattr(edgekit.pipeline, "run_stages", run_stages)
    assert main(["build", str(recipe)]) == 2
    assert seen["out_dir"] == Path("builds") / "tiny"
    assert (tmp_path / "builds" / "tiny").is_dir()


def test_make_output_dir_creates_missing_parents(tmp_path):
    assert make_output_dir(tmp_path / "a" / "b" / "c").is_dir()
    assert make_output_dir(tmp_path / "a" / "b" / "c").is_dir()  # an existing directory is fine


def test_a_broken_symlink_is_not_a_directory(tmp_path):
    (tmp_path / "link").symlink_to(tmp_path / "missing")
    with pytest.raises(UserInputError, match="cannot create the directory: File exists"):
        make_output_dir(tmp_path / "link")


# --- edgekit profile: its files and its temporary directories -----------------------------------------

DEVICE = {
    "kind": "local", "arch": "auto", "runtimes": ["onnxruntime"], "delegates": {"onnxruntime": ["cpu"]},
    "threads": [1],
    "protocol": {"warmup_runs": 1, "min_runs": 3, "min_seconds": 0, "rounds": 1, "timeout_seconds": 120},
}


def _device_file(folder: Path, **fields) -> Path:
    path = folder / "device.yaml"
    path.write_text(yaml.safe_dump({"name": "quick", **DEVICE, **fields}))
    return path


def _tiny_onnx(path: Path) -> Path:
    """A one-node ONNX model (Relu on a 1x3x8x8 image), written without torch."""
    import onnx
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Relu", ["image"], ["logits"])], "tiny", [image], [logits])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.fixture
def temp_root(tmp_path, monkeypatch) -> Path:
    """An empty folder that this process and its children use as the system's temporary directory."""
    import tempfile

    root = tmp_path / "system-tmp"
    root.mkdir()
    monkeypatch.setenv("TMPDIR", str(root))
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def _left_in(temp_root: Path) -> list[str]:
    # onnxruntime keeps one session-id file, .ses, in the temporary directory and reuses it on every run
    return sorted(path.name for path in temp_root.iterdir() if path.name != ".ses")


def test_profile_inputs_that_do_not_exist(tmp_path, capsys):
    model = _tiny_onnx(tmp_path / "model.onnx")
    missing = tmp_path / "missing.npz"
    error = _refused(capsys, ["profile", str(model), "--device", str(_device_file(tmp_path)), "--inputs", str(missing)])
    assert error == f"--inputs {missing}: file not found"


def test_profile_inputs_that_are_a_directory(tmp_path, capsys):
    model = _tiny_onnx(tmp_path / "model.onnx")
    error = _refused(capsys, ["profile", str(model), "--device", str(_device_file(tmp_path)), "--inputs", str(tmp_path)])
    assert error == f"--inputs {tmp_path}: not a file"


def test_profile_leaves_no_temporary_directory_behind(tmp_path, temp_root, capsys):
    model = _tiny_onnx(tmp_path / "model.onnx")
    assert main(["profile", str(model), "--device", str(_device_file(tmp_path)), "--json"]) == 0
    assert '"runtime": "onnxruntime"' in capsys.readouterr().out
    assert _left_in(temp_root) == []


def test_profile_on_a_device_that_is_not_set_up_leaves_no_temporary_directory(tmp_path, temp_root, capsys):
    model = _tiny_onnx(tmp_path / "model.onnx")
    device = _device_file(tmp_path, kind="emulated-arm64", arch="aarch64",
                          emulated_arm64={"qemu_cpu": "cortex-a76", "sysroot": str(tmp_path / "no-sysroot")})
    assert main(["profile", str(model), "--device", str(device)]) == 1
    assert "is not available here" in capsys.readouterr().err
    assert _left_in(temp_root) == []
