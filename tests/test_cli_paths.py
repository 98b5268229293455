"""``edgekit build --out``: a build directory that cannot be one is refused up front, in one line, exit 2."""

import os
from pathlib import Path

import pytest
import yaml

import edgekit.pipeline
from conftest import tiny_recipe_data
from edgekit.artifacts import make_output_dir
from edgekit.cli import main
from edgekit.errors import UserInputError


@pytest.fixture
def recipe(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe_data()))
    return path


@pytest.fixture
def no_build(monkeypatch):
    """Fail the test if a build starts: every check here must come before it."""
    def build(*args, **kwargs):
        pytest.fail("the build started")

    monkeypatch.setattr(edgekit.pipeline, "build", build)


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

    def build(recipe, out_dir, **options):
        seen["out_dir"] = out_dir
        raise UserInputError("stop here")

    monkeypatch.setattr(edgekit.pipeline, "build", build)
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
