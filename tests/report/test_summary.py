"""The terminal summary: one row per artifact x runtime, per-device columns named after their metric
(and thread count when a device ran several), the report paths."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from edgekit.report import format_summary, write_html

V1_REPORT = Path(__file__).with_name("data") / "report_v1.json"


def row_of(text: str, artifact: str, runtime: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(artifact + " ") and f" {runtime} " in line)


def emulated_device_name(report: dict) -> str:
    return next(p["device"] for p in report["profiles"] if p["obtained"] == "emulated")


def test_one_row_per_artifact_and_runtime_with_device_columns(full_report, tmp_path):
    write_html(full_report, tmp_path / "report.html")
    text = format_summary(full_report, tmp_path, wide=True)
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("Artifact"))
    for column in ("Format", "Precision", "Method", "Size MB", "Top-1 %", "Top-5 %", "int8 check"):
        assert column in header
    devices = dict.fromkeys(p["device"] for p in full_report["profiles"])
    for device in devices:
        assert f"{device} int8/float" in header
    assert "host latency p50 (ms)" in header and f"{emulated_device_name(full_report)} instructions (emulated)" in header
    assert " p50 " not in header.replace("latency p50", "")  # only a latency column says p50
    for entry in full_report["accuracy"]:
        row = next(line for line in lines if line.startswith(entry["artifact"] + " ") and f" {entry['runtime']} " in line)
        assert f"{entry['top1']:.2f}" in row and entry["method"] in row
    assert lines[-2] == f"report: {tmp_path / 'report.json'}"
    assert lines[-1] == f"html:   {tmp_path / 'report.html'}"


def test_emulated_devices_show_instructions_not_milliseconds(full_report, tmp_path):
    text = format_summary(full_report, tmp_path, wide=True)
    emulated = [p for p in full_report["profiles"] if p["obtained"] == "emulated"]
    assert emulated
    for profile in emulated:
        assert "instr (emulated)" in row_of(text, profile["artifact"], profile["runtime"])
    real = next(p for p in full_report["profiles"] if p["obtained"] == "real")
    assert f"{real['value']:#.3g} ms" in text
    check = full_report["int8_kernels"][0]
    assert f"ok ({check['int8']} int8, 0 float)" in text


def test_the_report_as_built_today_says_what_was_not_measured(real_report, tmp_path):
    text = format_summary(real_report, tmp_path)
    (entry,) = [e for e in real_report["accuracy"] if e["runtime"] == "torch"][:1]
    assert entry["artifact"] in text and f"{entry['top1']:.2f}" in text
    if not real_report.get("profiles"):
        assert "latency: not measured in this build" in text
    assert "html:" not in text  # no report.html written in tmp_path


def test_each_thread_count_gets_its_own_columns(full_report, tmp_path):
    """A 2-thread run is shown beside the 1-thread one, never hidden behind it."""
    one_thread = [p for p in full_report["profiles"] if p["device"] == "host"]
    two_threads = copy.deepcopy(one_thread)
    for profile in two_threads:
        profile.update(threads=2, value=profile["value"] / 1.7)
    full_report["profiles"] += two_threads
    text = format_summary(full_report, tmp_path, wide=True)
    header = next(line for line in text.splitlines() if line.startswith("Artifact"))
    assert "host 1t latency p50 (ms)" in header and "host 2t latency p50 (ms)" in header
    for one, two in zip(one_thread, two_threads):
        row = row_of(text, one["artifact"], one["runtime"])
        assert f"{one['value']:#.3g} ms" in row and f"{two['value']:#.3g} ms" in row


def test_two_delegates_of_one_runtime_are_both_shown_and_named(full_report, tmp_path):
    profile = next(p for p in full_report["profiles"] if p["device"] == "host" and p["runtime"] == "litert")
    full_report["profiles"].append({**copy.deepcopy(profile), "delegate": "none", "value": 4.25})
    row = row_of(format_summary(full_report, tmp_path, wide=True), profile["artifact"], "litert")
    assert f"xnnpack: {profile['value']:#.3g} ms; none: 4.25 ms" in row


def test_a_version_1_report_reads_with_named_columns(tmp_path):
    report = json.loads(V1_REPORT.read_text())
    text = format_summary(report, tmp_path, wide=True)
    header = next(line for line in text.splitlines() if line.startswith("Artifact"))
    assert "host-smoke latency p50 (ms)" in header
    assert "arm64-cortex-a76-emulated instructions (emulated)" in header
    assert "arm64-cortex-a76-emulated p50" not in header and "arm64-cortex-a76-emulated latency" not in header
    assert "build incomplete" not in text


def test_an_incomplete_build_says_which_stages_did_not_finish(real_report, tmp_path):
    real_report["build"].update(complete=False, stages_finished=real_report["build"]["stages_finished"][:2])
    missing = real_report["build"]["stages_planned"][2:]
    assert f"build incomplete: stages not finished: {', '.join(missing)}" in format_summary(real_report, tmp_path)


SMOKE_REPORT = Path(__file__).with_name("data") / "report_smoke_hostx86.json"


def test_the_default_summary_fits_120_columns_and_wide_keeps_every_column(tmp_path):
    report = json.loads(SMOKE_REPORT.read_text())
    compact = format_summary(report, tmp_path)
    assert max(len(line) for line in compact.splitlines()) <= 120
    for entry in report["accuracy"]:
        row = row_of(compact, entry["artifact"], entry["runtime"])
        assert f"{entry['top1']:.2f}" in row
    assert "  arm64-cortex-a76-emulated: instructions (emulated)" in compact
    wide = format_summary(report, tmp_path, wide=True)
    assert max(len(line) for line in wide.splitlines()) > 120
    header = next(line for line in wide.splitlines() if line.startswith("Artifact"))
    assert "Format" in header and "Top-5 %" in header and "host-smoke int8/float" in header


def test_many_devices_go_to_further_tables_within_the_width(full_report, tmp_path):
    arm = [p for p in full_report["profiles"] if p["obtained"] == "emulated"]
    for index in range(4):
        full_report["profiles"] += [{**copy.deepcopy(p), "device": f"a-long-emulated-device-name-{index}"} for p in arm]
    text = format_summary(full_report, tmp_path)
    assert max(len(line) for line in text.splitlines()) <= 120
    assert sum(line.startswith("Artifact") for line in text.splitlines()) >= 2
    for index in range(4):
        assert f"a-long-emulated-device-name-{index}" in text


def test_an_int8_file_slower_than_float_is_flagged_with_its_likely_reason(tmp_path):
    report = json.loads(SMOKE_REPORT.read_text())
    text = format_summary(report, tmp_path)
    slow = next(p for p in report["profiles"] if (p["ratio_to_float"] or 0) > 1)
    assert "(1.28 SLOWER)" in row_of(text, slow["artifact"], slow["runtime"])
    flagged = " ".join(line.strip() for line in text.splitlines() if "SLOWER than float" in line or line.startswith("  "))
    assert f"int8 SLOWER than float: {slow['artifact']} ({slow['runtime']}/cpu, 1t) on host-smoke: 1.28x" in flagged
    assert "every conv, FC and residual add ran an int8 kernel (28 int8, 0 float)" in flagged
    report["int8_kernels"] = [{**check, "ok": False, "float": 2, "float_ops": ["Conv"]} for check in report["int8_kernels"]]
    assert "the kernel check found 2 float kernels (Conv)" in format_summary(report, tmp_path, wide=True)


def test_build_wide_flag_is_parsed():
    from edgekit.cli import _parser

    assert _parser().parse_args(["build", "r.yaml", "--wide"]).wide
    assert not _parser().parse_args(["build", "r.yaml"]).wide
