"""One real sweep: two tiny points built by real `edgekit build` processes (Fashion-MNIST slice, PTQ,
ONNX, profiled on this machine with host-smoke), a point that fails, and the rerun that reuses the
finished point and builds the failed one."""

from __future__ import annotations

import json

import pytest

from conftest import REPO
from edgekit.cli import main
from edgekit.sweep.results import load_sweep

from .tiny import tiny_sweep_recipe

pytestmark = pytest.mark.slow


def test_real_sweep_records_a_failure_then_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)  # the recipe names devices/host-smoke.yaml
    recipe = tiny_sweep_recipe(tmp_path)
    out = tmp_path / "sweep"
    blocker = out / "points" / "resolution=64"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the point's build directory goes: its build fails")
    args = ["sweep", str(recipe), "--grid", "model.resolution=[32,64]", "--set", "model.alpha=0.25", "--out", str(out)]

    assert main(args) == 1
    sweep = load_sweep(out)
    done, failed = sweep["points"]
    assert (done["id"], done["status"], failed["id"], failed["status"]) == (
        "resolution=32", "done", "resolution=64", "failed")
    assert "is a file, not a directory" in failed["error"] and "(exit 2; log: logs/resolution=64.log)" in failed["error"]
    assert done["model"]["resolution"] == 32 and done["model"]["macs"] > 0
    assert {(entry["runtime"], entry["precision"]) for entry in done["accuracy"]} == {
        ("torch", "float32"), ("onnxruntime", "float32"), ("onnxruntime", "int8")}
    report = json.loads((out / "points" / "resolution=32" / "report.json").read_text())
    assert done["profiles"] == report["profiles"] and len(done["profiles"]) == 2
    assert {(p["device"], p["metric"], p["obtained"]) for p in done["profiles"]} == {("host-smoke", "latency", "real")}
    built_at = (out / "points" / "resolution=32" / "report.json").stat().st_mtime_ns

    blocker.unlink()
    capsys.readouterr()
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "1 of 2 points already built, reused" in printed and "[2/2] resolution=64: done" in printed
    assert (out / "points" / "resolution=32" / "report.json").stat().st_mtime_ns == built_at
    sweep = load_sweep(out)
    assert [(point["status"], point["reused"]) for point in sweep["points"]] == [("done", True), ("done", False)]
    small, large = (point["model"]["macs"] for point in sweep["points"])
    assert large == pytest.approx(4 * small, rel=0.01)
    assert '<svg id="pareto-0"' in (out / "sweep.html").read_text()

    baseline = tmp_path / "baseline.json"
    assert main(["recommend", str(out), "--device", "host-smoke", "--max-latency-ms", "1000",
                 "--write-baseline", str(baseline)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("pick: resolution=") and f"baseline: {baseline}" in printed
    picked = printed.split()[1]
    assert main(["gate", str(out / "points" / picked / "report.json"), "--baseline", str(baseline)]) == 0
