"""The sweep driver and sweep.json, with a stand-in for the per-point build that writes hand-made reports:
skipping finished points, recording failures, schema validation, the copied-through report sections."""

from __future__ import annotations

import json

import pytest

from edgekit.artifacts import write_json
from edgekit.cli import main
from edgekit.sweep import run as sweep_run
from edgekit.sweep.grid import plan_points
from edgekit.sweep.results import load_sweep, table, validate_sweep
from edgekit.sweep.run import Outcome, point_environment, run_sweep

from .handmade import GRID, IDS, TABLE, make_report, write_recipe


class FakeBuild:
    """Writes the hand-made report of each point; the points named in ``fail`` fail like a build does."""

    def __init__(self, fail=(), incomplete=()):
        self.fail, self.incomplete, self.built = set(fail), set(incomplete), []

    def __call__(self, recipe_path, point, point_dir, until, log_path):
        self.built.append(point.id)
        log_path.write_text("[train] running\nedgekit: error: training diverged at step 3\n")
        if point.id in self.fail:
            return Outcome(False, 0.5, sweep_run._error_line(log_path, 1))
        point_dir.mkdir(parents=True, exist_ok=True)
        key = (point.recipe.model.alpha, point.recipe.model.resolution)
        write_json(point_dir / "report.json", make_report(*key, complete=point.id not in self.incomplete))
        return Outcome(True, 1.5)


def _sweep(tmp_path, fake, jobs=1):
    recipe = write_recipe(tmp_path)
    axes, points = plan_points(recipe, GRID, [])
    return run_sweep(recipe, axes, points, tmp_path / "sweep", set_args=[], jobs=jobs, run_point=fake,
                     log=lambda line: None)


def test_every_point_built_and_its_report_copied_through(tmp_path):
    fake = FakeBuild()
    document = _sweep(tmp_path, fake)
    assert sorted(fake.built) == sorted(IDS)
    written = load_sweep(tmp_path / "sweep")  # validated against sweep.schema.json
    assert written == json.loads(json.dumps(document))
    assert [point["status"] for point in written["points"]] == ["done"] * 4
    first = written["points"][0]
    report = make_report(0.25, 32)
    assert first["overrides"] == {"model.alpha": 0.25, "model.resolution": 32}
    assert first["build_dir"] == "points/alpha=0.25,resolution=32"
    for section in ("recipe", "model", "accuracy", "artifacts", "profiles"):
        assert first[section] == report[section]


def test_a_rerun_skips_finished_points_and_retries_failed_ones(tmp_path):
    first = FakeBuild(fail=[IDS[1]], incomplete=[IDS[2]])
    document = _sweep(tmp_path, first)
    statuses = {point["id"]: point["status"] for point in document["points"]}
    assert statuses == {IDS[0]: "done", IDS[1]: "failed", IDS[2]: "failed", IDS[3]: "done"}
    failed = next(point for point in document["points"] if point["id"] == IDS[1])
    assert failed["error"] == f"training diverged at step 3 (exit 1; log: logs/{IDS[1]}.log)"
    incomplete = next(point for point in document["points"] if point["id"] == IDS[2])
    assert "without a complete report.json" in incomplete["error"]

    second = FakeBuild()
    document = _sweep(tmp_path, second, jobs=2)
    assert sorted(second.built) == sorted([IDS[1], IDS[2]])
    assert all(point["status"] == "done" for point in document["points"])
    assert [point["reused"] for point in document["points"]] == [True, False, False, True]


def test_a_finished_point_of_another_recipe_is_built_again(tmp_path):
    _sweep(tmp_path, FakeBuild())
    recipe = write_recipe(tmp_path, train={"epochs": 2})
    axes, points = plan_points(recipe, GRID, [])
    again = FakeBuild()
    run_sweep(recipe, axes, points, tmp_path / "sweep", set_args=[], run_point=again, log=lambda line: None)
    assert sorted(again.built) == sorted(IDS)


def test_cli_exit_1_when_a_point_failed_and_the_html_and_table_are_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sweep_run, "build_point", FakeBuild(fail=[IDS[3]]))
    args = ["sweep", str(write_recipe(tmp_path)), "--out", str(tmp_path / "sweep")]
    for axis in GRID:
        args += ["--grid", axis]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert f"[4/4] {IDS[3]}: FAILED: training diverged at step 3" in out
    assert f"FAILED {IDS[3]}: training diverged" in out
    assert "Kendall τ (mult-adds vs host litert/xnnpack 1t: latency (ms)): 0.33 over 3 pairs" in out
    assert (tmp_path / "sweep" / "sweep.html").is_file()

    monkeypatch.setattr(sweep_run, "build_point", FakeBuild())
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "3 of 4 points already built, reused" in out and "[4/4]" in out


def test_table_rows_hold_the_paper_columns(tmp_path):
    from .handmade import hand_sweep

    header, rows, not_done = table(hand_sweep())
    assert header[:7] == ["point", "α", "ρ", "mult-adds", "params", "float top-1 torch", "float top-1 litert"]
    assert header[7:] == ["int8 top-1 litert", "host litert/xnnpack 1t: latency (ms)",
                          "cortex-a76 litert/xnnpack 1t: instructions (instructions, emulated)"]
    macs, top1, host_ms, instructions, _bytes = TABLE[(0.5, 32)]
    assert rows[2] == [IDS[2], "0.5", "32", "2.50 M", "0.250 M", "76.50", "76.50", "76.00", "0.350", "4 M"]
    assert not_done == [("alpha=1.0,resolution=32", "training diverged at step 3")]


@pytest.mark.parametrize("change, path", [
    (lambda sweep: sweep.update(schema_version=9), "$.schema_version"),
    (lambda sweep: sweep["points"][0].pop("model"), "$.points[0]"),
    (lambda sweep: sweep["points"][4].update(error=None), "$.points[4].error"),
    (lambda sweep: sweep["points"][0]["profiles"][0].update(value=-1), "$.points[0].profiles[0].value"),
])
def test_the_schema_rejects_a_broken_sweep(change, path):
    from edgekit.report.schema import ReportSchemaError

    from .handmade import hand_sweep

    sweep = hand_sweep()
    validate_sweep(sweep, "sweep.json")
    change(sweep)
    with pytest.raises(ReportSchemaError) as raised:
        validate_sweep(sweep, "sweep.json")
    assert str(raised.value).startswith(f"sweep.json: {path}")


def test_points_run_with_passive_openmp_threads_unless_the_user_chose_a_policy():
    assert point_environment({"PATH": "/bin"})["OMP_WAIT_POLICY"] == "PASSIVE"
    assert point_environment({"OMP_WAIT_POLICY": "ACTIVE"})["OMP_WAIT_POLICY"] == "ACTIVE"
    environment = point_environment({"EDGEKIT_NO_PROGRESS": "0"}, {"OMP_NUM_THREADS": "2"})
    assert environment["EDGEKIT_NO_PROGRESS"] == "1" and environment["OMP_NUM_THREADS"] == "2"
