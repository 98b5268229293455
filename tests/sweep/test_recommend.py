"""recommend, Pareto front and Kendall τ on the hand-checked sweep of ``handmade`` (see its table)."""

from __future__ import annotations

import json

import pytest
import yaml

from edgekit.cli import main
from edgekit.recipe import validate
from edgekit.sweep.results import kendall_tau, pareto_front, rank_agreement, Series

from .handmade import IDS, hand_sweep

A, B, C, D = IDS  # (0.25, 32), (0.25, 64), (0.5, 32), (0.5, 64)


def _run(capsys, *args):
    code = main(["recommend", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_highest_top1_within_a_latency_budget(sweep_dir, capsys):
    code, out, _err = _run(capsys, sweep_dir, "--device", "host", "--max-latency-ms", "0.4")
    assert code == 0
    assert out.startswith(f"pick: {B} (litert): int8/ptq.tflite, top-1 78.00%, latency 0.300 ms on host")
    assert "highest top-1 within the budget, on the Pareto front" in out
    assert f"runner-up: {C} (litert): int8/ptq.tflite, top-1 76.00%" in out
    assert f"  {D} (litert): latency 0.900 ms > 0.4 ms" in out
    assert f"  {C} (litert): dominated by {B} (litert): 0.300 ms and 78.00% vs 0.350 ms and 76.00%" in out
    assert f"  {A} (litert): meets the constraints, but top-1 70.00% is below the pick's 78.00%" in out
    assert "  alpha=1.0,resolution=32: build failed: training diverged at step 3" in out


def test_lowest_cost_above_an_accuracy_floor(sweep_dir, capsys):
    code, out, _err = _run(capsys, sweep_dir, "--device", "host", "--min-top1", "75")
    assert code == 0
    assert out.startswith(f"pick: {B} (litert)") and "lowest cost above the floor" in out
    assert f"runner-up: {C} (litert)" in out
    assert f"  {A} (litert): top-1 70.00% < 75%" in out
    assert f"  {D} (litert): meets the constraints, but costs 0.900 ms against the pick's 0.300 ms" in out


def test_emulated_device_budget_in_instructions_ranks_differently(sweep_dir, capsys):
    code, out, _err = _run(capsys, sweep_dir, "--device", "cortex-a76", "--max-instructions", "5e6")
    assert code == 0
    # on the emulated core (0.5, 32) is not dominated: 4 M instructions against (0.25, 64)'s 6 M
    assert out.startswith(f"pick: {C} (litert): int8/ptq.tflite, top-1 76.00%, instructions 4 M instructions "
                          f"(emulated) on cortex-a76")
    assert f"runner-up: {A} (litert)" in out
    assert f"  {B} (litert): instructions 6 M instructions > 5 M instructions" in out


def test_size_limit_can_pick_off_the_front(sweep_dir, capsys):
    code, out, _err = _run(capsys, sweep_dir, "--device", "host", "--max-latency-ms", "0.4", "--max-size-mb", "0.11")
    assert code == 0
    assert out.startswith(f"pick: {A} (litert)") and "runner-up: none" in out
    assert f"  {B} (litert): size 0.120 MB > 0.11 MB" in out


def test_nothing_fits_exit_1_with_the_nearest_misses(sweep_dir, capsys):
    code, out, _err = _run(capsys, sweep_dir, "--device", "host", "--max-latency-ms", "0.2", "--min-top1", "80")
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == "no point meets the constraints; nearest misses:"
    # relative excess: A 0 + 10/80, B 0.5 + 2/80, D 3.5 + 0, C 0.75 + 4/80
    assert lines[1] == f"  {A} (litert): top-1 70.00% < 80%"
    assert lines[2] == f"  {B} (litert): latency 0.300 ms > 0.2 ms; top-1 78.00% < 80%"
    assert lines[3].startswith(f"  {C} (litert)") and len(lines) == 4


def test_write_recipe_is_the_picked_points_ready_recipe(sweep_dir, tmp_path, capsys):
    target = tmp_path / "out" / "picked.yaml"
    code, out, _err = _run(capsys, sweep_dir, "--device", "host", "--max-latency-ms", "0.4", "--write-recipe", target)
    assert code == 0 and f"recipe: {target}" in out
    recipe = validate(yaml.safe_load(target.read_text()), source=str(target))
    assert (recipe.model.alpha, recipe.model.resolution, recipe.quantize.method) == (0.25, 64, "ptq")


def _with_reports(sweep_dir, **changes):
    """Each point's report.json in its build directory, as ``edgekit sweep`` leaves it."""
    from edgekit.artifacts import write_json

    from .handmade import TABLE, make_report

    reports = {}
    for point_id, (alpha, resolution) in zip(IDS, TABLE):
        reports[point_id] = {**make_report(alpha, resolution), **changes}
        write_json(sweep_dir / "points" / point_id / "report.json", reports[point_id])
    return reports


def test_write_baseline_is_the_gate_baseline_of_the_picked_points_report(sweep_dir, tmp_path, capsys):
    from edgekit.gate.checks import baseline_from_report

    reports = _with_reports(sweep_dir)
    target = tmp_path / "out" / "baseline.json"
    code, out, _err = _run(capsys, sweep_dir / "sweep.json", "--device", "host", "--max-latency-ms", "0.4",
                           "--write-baseline", target)
    assert code == 0 and out.startswith(f"pick: {B} (litert)") and f"baseline: {target}" in out
    assert json.loads(target.read_text()) == baseline_from_report(reports[B])
    gate = ["gate", str(sweep_dir / "points" / B / "report.json"), "--baseline", str(target)]
    assert main(gate) == 0 and "gate passed" in capsys.readouterr().out


def test_write_baseline_refused_when_the_gate_fails_on_the_pick(sweep_dir, tmp_path, capsys):
    _with_reports(sweep_dir, build={"complete": False, "stages_planned": ["train", "evaluate"],
                                    "stages_finished": ["train"]})
    target = tmp_path / "baseline.json"
    code, out, _err = _run(capsys, sweep_dir, "--device", "host", "--max-latency-ms", "0.4", "--write-baseline", target)
    assert code == 1 and "baseline not written: the gate failed on the pick's report" in out
    assert "FAIL" in out and not target.exists()


def test_write_baseline_without_the_points_report_is_exit_2(sweep_dir, tmp_path, capsys):
    code, _out, err = _run(capsys, sweep_dir, "--device", "host", "--max-latency-ms", "0.4", "--write-baseline",
                           tmp_path / "baseline.json")
    assert code == 2 and err.startswith("edgekit: error: ") and f"points/{B}/report.json" in err
    assert err.count("\n") == 1 and not (tmp_path / "baseline.json").exists()


@pytest.mark.parametrize("args, message", [
    (["--device", "hots"], "--device hots: no point of this sweep was profiled on it (devices: cortex-a76, host) "
                           "(did you mean 'host'?)"),
    (["--device", "host", "--runtime", "onnxruntime"], "--runtime: host has no runtime onnxruntime"),
    (["--device", "host", "--max-instructions", "1e6"], "host has no metric instructions in this sweep"),
    (["--device", "host", "--threads", "4"], "--threads: host has no threads 4 in this sweep (measured: 1)"),
])
def test_bad_input_is_one_line_exit_2(sweep_dir, capsys, args, message):
    code, _out, err = _run(capsys, sweep_dir, *args)
    assert code == 2 and err.startswith("edgekit: error: ") and message in err and err.count("\n") == 1


def test_missing_or_broken_sweep_is_exit_2(tmp_path, capsys):
    code, _out, err = _run(capsys, tmp_path, "--device", "host")
    assert code == 2 and f"sweep results {tmp_path / 'sweep.json'}: no such file" in err
    (tmp_path / "sweep.json").write_text('{"schema_version": 1}')
    code, _out, err = _run(capsys, tmp_path, "--device", "host")
    assert code == 2 and "sweep.json: $: 'edgekit_version' is missing" in err


def test_pareto_front_hand_checked():
    items = [(0.10, 70.0), (0.30, 78.0), (0.35, 76.0), (0.90, 83.0), (0.30, 77.0), (1.0, 83.0)]
    assert pareto_front(items) == [(0.10, 70.0), (0.30, 78.0), (0.90, 83.0)]
    assert pareto_front([]) == []


def test_kendall_tau_hand_checked():
    agreement = kendall_tau([("a", 1, 0.10), ("b", 3, 0.30), ("c", 2.5, 0.35), ("d", 9, 0.90)])
    assert agreement.tau == pytest.approx(4 / 6) and agreement.pairs == 6
    assert agreement.flips == [("c", "b")]  # c has fewer mult-adds than b but costs more
    reversed_order = kendall_tau([("a", 1, 3.0), ("b", 2, 2.0), ("c", 3, 1.0)])
    assert reversed_order.tau == pytest.approx(-1.0) and len(reversed_order.flips) == 3
    ties = kendall_tau([("a", 1, 1.0), ("b", 1, 2.0), ("c", 2, 3.0)])  # τ-b: 2 / sqrt(2 * 3)
    assert ties.tau == pytest.approx(2 / 6 ** 0.5)
    assert kendall_tau([("a", 1, 1.0)]).tau is None


def test_rank_agreement_per_series():
    sweep = hand_sweep()
    host = Series("host", "litert", "xnnpack", 1, "latency", "ms", "real")
    arm = Series("cortex-a76", "litert", "xnnpack", 1, "instructions", "instructions", "emulated")
    assert rank_agreement(sweep, host).flips == [(C, B)]
    assert rank_agreement(sweep, arm).tau == pytest.approx(1.0)
