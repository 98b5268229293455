"""The accuracy half of report.html's "Per layer" section: the layers kept in float, the sensitivity ranking and
the ``max_drop`` steps (from the quantize stage, or from ``edgekit analyze``)."""

from __future__ import annotations

from html import escape

SHOWN_LAYERS = 10


def sensitivity_blocks(report: dict) -> str:
    quantization = report.get("quantization") or {}
    analysis = report.get("analysis") or {}
    blocks = []
    kept = quantization.get("keep_float")
    if kept is not None:
        blocks.append(f"<h3>Layers kept in float</h3><p>{escape(', '.join(kept)) or 'none: every conv/FC is int8'}</p>")
    sensitivity = analysis.get("sensitivity") or quantization.get("sensitivity")
    if sensitivity:
        blocks.append(_sensitivity_table(sensitivity))
    search = analysis.get("max_drop") or quantization.get("max_drop")
    if search:
        blocks.append(_steps_table(search))
    return "".join(blocks)


def _sensitivity_table(sensitivity: dict) -> str:
    rows = "".join(
        f"<tr><td>{record['rank']}</td><td>{escape(record['layer'])}</td><td>{escape(record.get('op', ''))}</td>"
        f"<td>{record['only_this_quantized_top1']:.2f}</td><td>{record['only_this_float_top1']:.2f}</td></tr>"
        for record in sensitivity["layers"][:SHOWN_LAYERS])
    return (f"<h3>Sensitivity: which layer loses the accuracy</h3><p>{escape(sensitivity['source'])}, "
            f"{sensitivity['samples']} test images. Top-1: float {sensitivity['float_top1']:.2f}, all int8 "
            f"{sensitivity['int8_top1']:.2f}, weights only {sensitivity['weights_only_top1']:.2f}, activations only "
            f"{sensitivity['activations_only_top1']:.2f}. The {min(SHOWN_LAYERS, len(sensitivity['layers']))} worst "
            "layers:</p><table><tr><th>rank</th><th>layer</th><th>op</th><th>top-1, only this layer int8</th>"
            f"<th>top-1, only this layer float</th></tr>{rows}</table>")


def _steps_table(search: dict) -> str:
    rows = []
    for number, step in enumerate(search["steps"]):
        measured = "<br>".join(_file_text(entry) for entry in step.get("files", [])) or "not measured (edgekit analyze)"
        rows.append(f"<tr><td>{number}</td><td>{escape(', '.join(step['float_layers']) or 'none')}</td>"
                    f"<td>{step['top1']:.2f} (−{step['drop']:.2f})</td><td>{measured}</td></tr>")
    verdict = "reached" if search["reached"] else "not reached with every layer tried"
    return (f"<h3>max_drop {search['max_drop']} points: {verdict}</h3><p>Float top-1 {search['float_top1']:.2f} "
            "(torch). Each step keeps one more of the worst layers in float.</p><table><tr><th>step</th>"
            "<th>layers in float</th><th>top-1 torch, simulated (drop)</th><th>files: top-1 in the runtime, cost</th>"
            f"</tr>{''.join(rows)}</table>")


def _file_text(entry: dict) -> str:
    cost = entry.get("cost") or {}
    where = (f", {cost['value']:.4g} {escape(cost['unit'])} ({escape(cost['obtained'])}, {escape(cost['device'])}, "
             f"{cost['threads']} thread)" if cost.get("value") is not None else "")
    return f"{escape(entry['format'])} in {escape(entry['runtime'])}: {entry['top1']:.2f}{where}"
