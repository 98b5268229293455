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
    for heading in ("Headline", "Build", "Model card", "Accuracy per artifact and runtime", "int8 kernel check", "Size per artifact",
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


def test_the_model_card_gives_the_processes_of_a_data_parallel_run(full_report):
    import copy

    assert "training processes" not in render_html(full_report)  # one process: nothing to say
    report = copy.deepcopy(full_report)
    report["training"]["distributed"] = {"world_size": 4, "backend": "gloo", "per_process_batch_size": 16, "nodes": 2}
    page = render_html(report)
    assert ("<td>training processes</td><td>4 (DistributedDataParallel over gloo, 2 nodes), 16 images per process "
            "and step; threads are per process</td>") in page


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


SMOKE_REPORT = Path(__file__).with_name("data") / "report_smoke_hostx86.json"


def test_the_headline_colours_each_int8_file_and_flags_the_slower_one():
    report = json.loads(SMOKE_REPORT.read_text())
    page = render_html(report)
    headline = page[page.index('<section id="headline"'):page.index("</section>")]
    assert 'class="overall-bad"' in headline and "<strong" in headline and "RED" in headline
    assert '<td class="bad">1.28× SLOWER</td>' in headline
    assert '<td class="good">0.59×</td>' in headline and '<td class="good">0.42×</td>' in headline
    assert '<td class="good">-0.50 points</td>' in headline and "+0.00 points" in headline
    assert "29% of float_onnx" in headline and "ok (28 int8, 0 float)" in headline
    assert "int8 slower than float</strong>: int8/ptq.onnx (onnxruntime/cpu, 1t) on host-smoke: 1.28x" in headline
    # every int8 file faster: green
    for profile in report["profiles"]:
        if (profile["ratio_to_float"] or 0) > 1:
            profile["ratio_to_float"] = 0.8
    assert 'class="overall-good"' in render_html(report)


def test_the_gate_verdict_is_shown_when_a_baseline_is_given(tmp_path):
    report = json.loads(SMOKE_REPORT.read_text())
    page = render_html(report, gate=("bad", "gate vs baseline b.json: FAILED 1 of 9 checks: x"))
    assert '<p class="bad">gate vs baseline b.json: FAILED 1 of 9 checks: x</p>' in page
    report["recipe"]["gate"]["baseline"] = str(tmp_path / "missing.json")
    page = write_html(report, tmp_path / "report.html").read_text()
    assert "not run" in page and 'class="overall-bad"' in page  # red anyway: the slower int8 file


def test_build_date_command_and_folded_recipe():
    report = json.loads(SMOKE_REPORT.read_text())
    assert "not recorded in this report" in render_html(report)
    report["build"].update(started="2025-01-31T09:30:00Z", command=["edgekit", "build", "recipes/smoke.yaml", "--out", "a b"])
    page = render_html(report)
    assert "<td>started (UTC)</td><td>2025-01-31T09:30:00Z</td>" in page
    assert "<td>command</td><td>edgekit build recipes/smoke.yaml --out &#x27;a b&#x27;</td>" in page
    assert "<details><summary>Recipe (YAML" in page and "max_train_samples: 6000" in page


def test_machine_facts_print_only_what_is_known_and_where_it_came_from():
    page = render_html(json.loads(SMOKE_REPORT.read_text()))
    assert "None" not in page and "governor" not in page.replace("no core count or governor", "")
    host = page[page.index("<h3>host-smoke"):page.index("<h3>arm64")]
    assert "cores 2 (os.cpu_count(), read on the device)" in host and "cpu AMD EPYC (/proc/cpuinfo" in host
    arm = page[page.index("<h3>arm64"):]
    assert "cores" not in arm.replace("no core count", "") and "emulated CPU cortex-a76 (qemu -cpu" in arm


def test_sizes_use_one_format_per_column():
    page = render_html(json.loads(SMOKE_REPORT.read_text()))
    size_plot = page[page.index('<svg id="plot-size"'):]
    size_plot = size_plot[:size_plot.index("</svg>")]
    values = re.findall(r'font-size="10"[^>]*>([0-9.]+)</text>', size_plot)
    assert values and all(re.fullmatch(r"\d+\.\d{3}", value) for value in values)
    assert "0.9804" not in page and "0.3106" not in page
