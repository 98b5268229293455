"""A compiler's estimate in report.html and the terminal summary: profiles that carry an ``estimate`` (a
target whose capabilities measure ``estimated``, e.g. ethos-u through Vela). Every figure is labelled
estimated and quoted with the compiler's own caveat; none is shown as a latency."""

from __future__ import annotations

import textwrap
from html import escape

from edgekit.report.plots import format_number
from edgekit.report.summary import metric_label

#: the estimate's figures in the summary line, in this order
SUMMARY_FIGURES = ("total_cycles", "estimated_inference_time", "sram_used", "off_chip_flash_used", "dram_used")


def estimate_block(profile: dict) -> str:
    """The estimate of one profile entry: its figures, where it ran (NPU/CPU), per layer, the caveat, the files."""
    from edgekit.report.html import _table  # html imports this module

    estimate = profile["estimate"]
    title = f"{profile['artifact']}: {profile.get('delegate_applied') or profile['delegate']}"
    if not estimate.get("supported", True):
        return f"<h4>{escape(title)}</h4><p>Not supported: {escape(estimate.get('reason') or '')}</p>"
    figures = [[metric_label(figure["metric"]), _number(figure["value"]), figure["unit"], figure["obtained"]]
               for figure in estimate.get("estimates", [])]
    parts = [f"<h4>{escape(title)}</h4>", _config_note(estimate.get("config") or {}),
             _table(["estimate", "value", "unit", "obtained"], figures)]
    if estimate.get("caveat"):
        parts.append(f'<p class="note">The compiler says: &ldquo;{escape(estimate["caveat"])}&rdquo;</p>')
    parts.append(_cpu_ops_text(estimate.get("cpu_ops") or []))
    rows = [[row.get("layer") or "-", row["op"], row["target"], _number(row["cycles"]), f"{row.get('cycles_pct', 0):.1f}",
             _number(row["macs"]), "-" if row.get("mac_util_pct") is None else f"{row['mac_util_pct']:.1f}"]
            for row in estimate.get("per_layer") or []]
    if rows:
        table = _table(["layer", "op", "runs on", "cycles", "% of cycles", "MACs", "MAC utilisation %"], rows)
        parts.append(f"<details><summary>Per layer ({len(rows)} ops; estimated; layers named by the model, other ops "
                     f"by their op)</summary>{table}</details>")
    for what, path in (estimate.get("files") or {}).items():
        parts.append(f'<p class="note">{escape(what)} file: <code>{escape(path)}</code></p>')
    return "".join(parts)


def estimate_lines(report: dict, width: int = 120) -> list[str]:
    """For the terminal summary: one line per estimated profile of an int8 file (its headline figures)."""
    lines = []
    for profile in report.get("profiles") or []:
        estimate = profile.get("estimate")
        if not estimate or not estimate.get("supported", True):
            continue
        found = {figure["metric"]: figure for figure in estimate.get("estimates", [])}
        shown = [f"{metric_label(metric)} {format_number(found[metric]['value'])} {found[metric]['unit']}"
                 for metric in SUMMARY_FIGURES if found.get(metric) and found[metric]["value"]]
        on_cpu = len(estimate.get("cpu_ops") or [])
        where = f"{on_cpu} ops on the CPU" if on_cpu else "every op on the NPU"
        text = (f"{profile['device']} estimate (not a latency) {profile['artifact']}: {', '.join(shown)}; {where} "
                f"[{profile.get('runtime_version') or 'compiler'}]")
        lines += textwrap.wrap(text, width=width, subsequent_indent="  ", break_on_hyphens=False)
    return lines


def _config_note(config: dict) -> str:
    facts = [f"{key.replace('_', ' ')} {value}" for key, value in config.items() if value not in (None, "")]
    return f'<p class="note">{escape("; ".join(facts))}</p>' if facts else ""


def _cpu_ops_text(cpu_ops: list[dict]) -> str:
    if not cpu_ops:
        return "<p>Every op on the NPU.</p>"
    listed = ", ".join(f"{op['op']}" + (f" ({op['reason']})" if op.get("reason") else "") for op in cpu_ops)
    return f'<p class="fail">On the CPU: {escape(listed)}</p>'


def _number(value) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if float(value).is_integer() or abs(value) >= 1000 else f"{value:,.3f}"
