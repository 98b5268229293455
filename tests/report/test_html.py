"""report.html from the report: self-contained, every section, labelled numbers, escaped strings."""

from __future__ import annotations

import json
import re
from pathlib import Path

from edgekit.report import render_html, write_html

V1_REPORT = Path(__file__).with_name("data") / "report_v1.json"

PLOT_IDS = ("plot-size", "plot-loss", "plot-accuracy-latency-host")


def test_every_section_and_plot_is_there(full_report, tmp_path):
    page = write_html(full_report, tmp_path / "report.html").read_text()
    for heading in ("Model card", "Accuracy per artifact and runtime", "int8 kernel check", "Size per artifact",
                    "Latency per device", "Training and QAT loss", "Build stages"):
        assert f"<h2>{heading}</h2>" in page
    for plot_id in PLOT_IDS:
        assert f'<svg id="{plot_id}"' in page
    assert re.search(r'<svg id="plot-per-node-host-\d+"', page)
    assert "not measured in this build" not in page


def test_the_page_loads_nothing_from_outside(full_report):
    page = render_html(full_report)
    assert not re.search(r"""\b(src|href)\s*=""", page)
    assert "<script" not in page and "@import" not in page and "url(" not in page
    assert "Content-Security-Policy" in page


def test_the_model_card_names_the_settings_and_versions(full_report):
    page = render_html(full_report)
    model = full_report["model"]
    assert f"<td>width multiplier α</td><td>{model['alpha']}</td>" in page
    assert f"{model['macs']:,}" in page
    for name, version in full_report["environment"].items():
        assert f"<td>{name}</td><td>{version}</td>" in page
    assert full_report["training"]["dataset"] in page and "QAT backend pt2e" in page


def test_emulated_times_are_never_shown_as_latency(full_report, emulated_device):
    page = render_html(full_report)
    arm_block = page[page.index(f"<h3>{emulated_device}"):]
    arm_block = arm_block[:arm_block.index("</svg>")]
    assert "not a latency (emulated): see instructions" in arm_block and "2,460,000" in arm_block
    assert "instructions per inference (emulated: not a latency)" in arm_block
    assert "12.0" not in arm_block  # its init_ms, a wall time under emulation
    assert "80.5" not in arm_block  # its peak RSS, the emulator's memory
    assert "ms (real device)" not in arm_block


def test_absent_sections_say_so_instead_of_an_empty_table(real_report):
    for key in ("artifacts", "int8_kernels", "profiles", "qat"):
        real_report.pop(key, None)
    page = render_html(real_report)
    for what in ("Artifact sizes", "The int8 kernel check", "Latency"):
        assert f'<p class="absent">{what}: not measured in this build.</p>' in page
    assert "<table></table>" not in page and "<th>p50 ms</th>" not in page


def test_strings_are_escaped(full_report):
    full_report["recipe"]["name"] = "<script>alert(1)</script>"
    full_report["accuracy"][0]["artifact"] = 'a"<b>&'
    full_report["profiles"][0]["device"] = "<img onerror=x>"
    page = render_html(full_report)
    assert "<script>" not in page and "<img" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "a&quot;&lt;b&gt;&amp;" in page


def test_the_latency_table_names_the_delegate_of_each_row(full_report):
    page = render_html(full_report)
    assert "<th>delegate</th>" in page
    litert = next(p for p in full_report["profiles"] if p["runtime"] == "litert")
    assert re.search(rf"<td>{re.escape(litert['artifact'])}</td><td>litert</td><td>xnnpack</td>", page)


def test_a_version_1_report_renders_without_showing_an_emulated_latency():
    page = render_html(json.loads(V1_REPORT.read_text()))
    arm_block = page[page.index("<h3>arm64-cortex-a76-emulated"):]
    assert "not a latency (emulated): see instructions" in arm_block
    assert "instructions per inference (emulated: not a latency)" in arm_block
    assert "ms (real device)" not in arm_block
    assert "p50 latency, ms (real device)" in page[page.index("<h3>host-smoke"):page.index("<h3>arm64")]


def test_an_incomplete_build_is_marked(real_report):
    real_report["build"].update(complete=False, stages_finished=["train"])
    assert '<p class="fail">build incomplete: stages not finished: evaluate' in render_html(real_report)
