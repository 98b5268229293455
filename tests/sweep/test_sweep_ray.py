"""``edgekit sweep --executor ray``: the one-line errors before any point runs, the CPUs a task asks for,
a node that does not see the sweep directory, and one real sweep through a real single-node Ray head that
must give the local executor's accuracies and artifact hashes. The head, the driver and ``ray stop`` run
inside network and PID namespaces the test makes itself (only ``lo`` up), so every socket is loopback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import REPO
from edgekit.cli import main
from edgekit.sweep.grid import plan_points
from edgekit.sweep.ray_executor import MARKER_FILE, build_on_node, task_cpus
from edgekit.sweep.results import load_sweep

from .tiny import tiny_sweep_recipe

RAY_HEAD = Path(__file__).with_name("ray_head.sh")
GRID = ["--grid", "model.resolution=[32,64]", "--set", "model.alpha=0.25"]


def error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # the recipe names devices/host-smoke.yaml
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def test_without_ray_installed_names_the_extra(tmp_path, in_repo, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    out = tmp_path / "sweep"
    args = ["sweep", str(tiny_sweep_recipe(tmp_path)), *GRID, "--executor", "ray", "--ray-address", "127.0.0.1:1",
            "--out", str(out)]
    assert main(args) == 2
    assert error_line(capsys) == ("edgekit: error: --executor ray: Ray is not installed here; "
                                  "pip install edgekit[ray]")
    assert not out.exists()


def test_ray_needs_a_cluster_address(tmp_path, in_repo, capsys):
    pytest.importorskip("ray", reason="the ray extra is not installed")
    assert main(["sweep", str(tiny_sweep_recipe(tmp_path)), *GRID, "--executor", "ray"]) == 2
    assert "--executor ray: no cluster named; give --ray-address" in error_line(capsys)


def test_unreachable_cluster_is_one_line_before_any_point(tmp_path, in_repo, capsys):
    pytest.importorskip("ray", reason="the ray extra is not installed")
    with socket.socket() as probe:  # a loopback port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "sweep"
    args = ["sweep", str(tiny_sweep_recipe(tmp_path)), *GRID, "--executor", "ray", "--ray-address",
            f"127.0.0.1:{port}", "--out", str(out)]
    assert main(args) == 2
    assert error_line(capsys).startswith(f"edgekit: error: --ray-address 127.0.0.1:{port}: no Ray cluster answers there")
    assert not out.exists()


def test_ray_address_without_the_ray_executor(tmp_path, in_repo, capsys):
    assert main(["sweep", str(tiny_sweep_recipe(tmp_path)), *GRID, "--ray-address", "127.0.0.1:1"]) == 2
    assert error_line(capsys) == "edgekit: error: --ray-address: only with --executor ray"


def test_task_asks_for_the_most_threads_the_recipe_runs_on_the_node(tmp_path, in_repo):
    recipe = tiny_sweep_recipe(tmp_path, train={"threads": 3}, evaluate={"threads": 2})
    _axes, points = plan_points(recipe, ["profile.threads=[[1],[4]]"], [])
    assert [task_cpus(point) for point in points] == [3, 4]
    unset = tiny_sweep_recipe(tmp_path, train={"threads": None}, profile={"threads": None})
    _axes, points = plan_points(unset, ["evaluate.threads=[1,2]"], [])
    assert [task_cpus(point) for point in points] == [1, 2]  # host-smoke's own list is [1]
    remote = tiny_sweep_recipe(tmp_path, profile={"devices": ["devices/raspberry-pi-4.yaml"], "threads": [4]})
    _axes, points = plan_points(remote, ["evaluate.threads=[1]"], [])
    assert task_cpus(points[0]) == 1  # the Pi runs its own threads, not the node's
    data_parallel = tiny_sweep_recipe(tmp_path, train={"threads": 2, "distributed": {"nproc_per_node": 2}},
                                      evaluate={"threads": 1}, profile={"threads": [1]})
    _axes, points = plan_points(data_parallel, ["evaluate.threads=[1,3]"], [])
    assert [task_cpus(point) for point in points] == [4, 4]  # 2 torchrun processes of 2 threads each


def test_a_node_without_the_shared_sweep_directory_fails_the_point(tmp_path):
    (tmp_path / MARKER_FILE).write_text("another sweep's token")
    outcome = build_on_node(["--version"], str(tmp_path / "never.log"), str(tmp_path), str(tmp_path / MARKER_FILE),
                            "this sweep's token", 1)
    assert not outcome.ok and f"does not see the sweep directory {tmp_path}" in outcome.error
    assert not (tmp_path / "never.log").exists()


def _namespaces_usable() -> str | None:
    """Why the real Ray test cannot run here, or None."""
    if os.geteuid() != 0:
        return "not root: the test needs `unshare --net --pid` to keep the Ray head on loopback"
    missing = [tool for tool in ("unshare", "ip") if shutil.which(tool) is None]
    return f"no {' or '.join(missing)} on PATH" if missing else None


@pytest.mark.slow
def test_real_ray_head_gives_the_local_results(tmp_path, in_repo, capsys):
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install edgekit[ray])")
    why_not = _namespaces_usable()
    if why_not:
        pytest.skip(why_not)
    recipe = tiny_sweep_recipe(tmp_path)
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    assert main(["sweep", str(recipe), *GRID, "--jobs", "2", "--out", str(local)]) == 0
    ray_temp = tempfile.mkdtemp(prefix="ekray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    try:
        driver = [sys.executable, "-m", "edgekit.cli", "sweep", str(recipe), *GRID, "--executor", "ray",
                  "--out", str(on_ray)]
        run = subprocess.run(["unshare", "--net", "--pid", "--fork", "--mount-proc", "bash", str(RAY_HEAD),
                              str(Path(sys.executable).with_name("ray")), ray_temp, *driver],
                             cwd=REPO, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
                             env={**os.environ, "EDGEKIT_NO_PROGRESS": "1"})
    finally:
        shutil.rmtree(ray_temp, ignore_errors=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "sweep: Ray cluster at 127.0.0.1:6379: 2 CPUs; each point asks for 1 CPU, 2 at once" in run.stdout

    local_points, ray_points = load_sweep(local)["points"], load_sweep(on_ray)["points"]
    assert [p["id"] for p in ray_points] == [p["id"] for p in local_points] == ["resolution=32", "resolution=64"]
    for built_here, built_on_ray in zip(local_points, ray_points):
        assert built_on_ray["status"] == "done" and built_on_ray["reused"] is False
        assert built_on_ray["accuracy"] == built_here["accuracy"]
        assert _hashes(built_on_ray) == _hashes(built_here)
        assert set(_hashes(built_here)) == {"float_onnx", "ptq_onnx"}
        assert built_on_ray["model"] == built_here["model"]
    assert (on_ray / "points" / "resolution=64" / "report.json").is_file()
    assert (on_ray / "logs" / "resolution=64.log").is_file()


def _hashes(point: dict) -> dict[str, str]:
    return {artifact["name"]: artifact["sha256"] for artifact in point["artifacts"]}
