"""Instructions per inference under emulation exclude the harness: the same timed loop with no inference
(timer, list append, marker calls) is counted under the same emulator and its median subtracted."""

import statistics

import pytest

from edgekit.targets import emulated
from targets.conftest_models import serve_or_skip
from targets.test_emulated import load_ondevice, profile, profile_under_qemu


def test_the_script_runs_the_timed_loop_again_with_no_inference(monkeypatch, tmp_path, models):
    ondevice = load_ondevice()
    calls = []

    class CountingMarkers:
        def __init__(self, enabled):
            pass

        def begin(self):
            calls.append("begin")

        def end(self):
            calls.append("end")

    monkeypatch.setattr(ondevice, "Markers", CountingMarkers)
    monkeypatch.setenv(ondevice.INSN_FILE_ENV, str(tmp_path / "counts.txt"))
    (tmp_path / "counts.txt").write_text("".join(f"{count}\n" for count in [1000, 1010, 1006, 1004, 7, 9, 8, 8]))
    args = ondevice.parse_args([str(models.float_onnx), "--warmup", "1", "--min-runs", "4", "--max-runs", "4",
                                "--min-seconds", "0", "--markers"])
    args.scratch = None  # main() sets it: the folder for --per-node's profile file
    result = ondevice.profile(args)
    assert result["runs"] == 4 and calls == ["begin", "end"] * 8  # 4 inferences, then 4 empty iterations
    assert (result["instructions_per_inference"], result["harness_instructions"]) == (1005 - 8, 8)


def test_the_target_splits_inferences_from_the_harness():
    assert emulated._net_of_harness([1000, 1010, 1006, 7, 9, 8]) == ([992, 1002, 998], 8)
    assert emulated._net_of_harness([]) == ([], None)


@pytest.fixture(scope="module")
def a76():
    yield from serve_or_skip(emulated.EmulatedArm64Target(profile()), "emulated-arm64")


@pytest.mark.slow
def test_emulated_counts_are_net_of_a_measured_empty_iteration(a76, models):
    harness = {}
    for name in ("float_tflite", "int8_tflite"):
        result = profile_under_qemu(a76, getattr(models, name))
        counts_file = max(a76.workdir.glob("instructions-*.txt"), key=lambda path: int(path.stem.split("-")[1]))
        raw = [int(line) for line in counts_file.read_text().split()]
        inferences, empty = raw[: result["runs"]], raw[result["runs"]:]
        assert len(empty) == result["runs"] == 3
        harness[name] = result["harness_instructions"]
        assert harness[name] == a76.last_harness_instructions == int(statistics.median(empty)) > 0
        assert result["instructions_per_inference"] == int(statistics.median(inferences)) - harness[name]
        assert statistics.median(a76.last_instruction_counts) == result["instructions_per_inference"]
    # The harness is the script's, not the model's: the same count give or take a little for both files.
    assert harness["int8_tflite"] == pytest.approx(harness["float_tflite"], rel=0.1)
