"""The terminal summary: one row per artifact x runtime, per-device columns, the report paths."""

from __future__ import annotations

from edgekit.report import format_summary, write_html


def test_one_row_per_artifact_and_runtime_with_device_columns(full_report, tmp_path):
    write_html(full_report, tmp_path / "report.html")
    text = format_summary(full_report, tmp_path)
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("Artifact"))
    for column in ("Format", "Precision", "Method", "Size MB", "Top-1 %", "Top-5 %", "int8 check"):
        assert column in header
    devices = dict.fromkeys(p["device"] for p in full_report["profiles"])
    for device in devices:
        assert f"{device} p50" in header and f"{device} int8/float" in header
    for entry in full_report["accuracy"]:
        row = next(line for line in lines if line.startswith(entry["artifact"] + " ") and f" {entry['runtime']} " in line)
        assert f"{entry['top1']:.2f}" in row and entry["method"] in row
    assert lines[-2] == f"report: {tmp_path / 'report.json'}"
    assert lines[-1] == f"html:   {tmp_path / 'report.html'}"


def test_emulated_devices_show_instructions_not_milliseconds(full_report, tmp_path):
    text = format_summary(full_report, tmp_path)
    emulated = [p for p in full_report["profiles"] if p["emulated"]]
    assert emulated
    for profile in emulated:
        row = next(line for line in text.splitlines() if line.startswith(profile["artifact"] + " ")
                   and f" {profile['runtime']} " in line)
        assert "instr (emulated)" in row
    real = next(p for p in full_report["profiles"] if not p["emulated"])
    assert f"{real['latency_ms']['p50']:#.3g} ms" in text
    check = full_report["int8_kernels"][0]
    assert f"ok ({check['int8']} int8, 0 float)" in text


def test_the_report_as_built_today_says_what_was_not_measured(real_report, tmp_path):
    text = format_summary(real_report, tmp_path)
    (entry,) = [e for e in real_report["accuracy"] if e["runtime"] == "torch"][:1]
    assert entry["artifact"] in text and f"{entry['top1']:.2f}" in text
    if not real_report.get("profiles"):
        assert "latency: not measured in this build" in text
    assert "html:" not in text  # no report.html written in tmp_path
