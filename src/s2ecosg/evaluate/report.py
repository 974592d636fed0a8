"""``evaluate/metrics.md`` and ``metrics.html``: an evaluation's scores for a person to read."""

from __future__ import annotations

from collections.abc import Iterator
from html import escape

from s2ecosg.evaluate.results import AREAS, EcosgComparison, Evaluation
from s2ecosg.metrics import Scores
from s2ecosg.model.card import CalibrationFit


def markdown(result: Evaluation) -> str:
    """Metrics as a Markdown report: agreement per level, then per-class IoU and F1."""
    lines = [
        "# Agreement with the reference labels",
        "",
        "| area | level | pixels | agreement | mean IoU | mean F1 |",
        "|---|---|---|---|---|---|",
    ]
    for area, level, score in level_scores(result):
        lines.append(
            f"| {area} | {level} | {score['pixels']} | {percent(score['agreement'])} | "
            f"{percent(score['mean_iou'])} | {percent(score['mean_f1'])} |"
        )
    lines += [
        "",
        "## Per class (validation blocks)",
        "",
        "| id | class | IoU | F1 | reference pixels |",
        "|---|---|---|---|---|",
    ]
    for class_id, class_scores in result.areas["validation"].levels["classes"]["per_class"].items():
        lines.append(
            f"| {class_id} | {result.class_names.get(class_id, '')} | {percent(class_scores['iou'])} | "
            f"{percent(class_scores['f1'])} | {class_scores['reference_pixels']} |"
        )
    lines += calibration_markdown(result.calibration)
    lines += ecosg_markdown(result.ecosg)
    lines += baseline_markdown(result)
    if result.points is not None:
        points = result.points
        lines += ["", f"## Point samples: {points.scored} of {points.points} points scored", ""]
        lines += [f"- {level}: agreement {percent(score['agreement'])}" for level, score in points.levels.items()]
    return "\n".join(lines) + "\n"


def calibration_markdown(calibration: CalibrationFit | None) -> list[str]:
    """The bundle's calibration on the validation pixels: temperature, ECE, Brier and NLL before and after."""
    if not calibration:
        return ["", "## Calibration", "", "The bundle is not calibrated (temperature 1)."]
    lines = [
        "",
        f"## Calibration: temperature {calibration.temperature:.3f} ({calibration.pixels} validation pixels)",
        "",
        "| probabilities | ECE (15 bins) | Brier | NLL | accuracy |",
        "|---|---|---|---|---|",
    ]
    for key, scores in (("before", calibration.before), ("after", calibration.after)):
        lines.append(
            f"| {key} | {percent(scores.ece)} | {scores.brier:.4f} | {scores.nll:.4f} | {percent(scores.accuracy)} |"
        )
    return lines + ["", "Reliability diagram: `reliability.png`."]


def baseline_markdown(result: Evaluation) -> list[str]:
    """CNN against the per-pixel LightGBM baseline, per area and level."""
    if result.baseline is None:
        return []
    lines = [
        "",
        "## CNN and the per-pixel LightGBM baseline (same bands, same split)",
        "",
        "| area | level | CNN agreement | baseline agreement | CNN mean IoU | baseline mean IoU |",
        "|---|---|---|---|---|---|",
    ]
    for area, level, score in level_scores(result):
        other = result.baseline[area].levels[level]
        lines.append(
            f"| {area} | {level} | {percent(score['agreement'])} | {percent(other['agreement'])} | "
            f"{percent(score['mean_iou'])} | {percent(other['mean_iou'])} |"
        )
    return lines


def level_scores(result: Evaluation) -> Iterator[tuple[str, str, Scores]]:
    """(area, level, scores) of the validation blocks, then of the whole area, level by level."""
    for area in AREAS:
        for level, score in result.areas[area].levels.items():
            yield area, level, score


def ecosg_markdown(comparison: EcosgComparison | None) -> list[str]:
    """The table of Walsh et al. (2020): model and original ECOSG agreement with the reference at CLC L1/L2."""
    if not comparison:
        return []
    lines = [
        "",
        "## Model and the original ECOSG against the reference (same pixels)",
        "",
        "| area | level | pixels | model agreement | ECOSG agreement | model mean IoU | ECOSG mean IoU |",
        "|---|---|---|---|---|---|---|",
    ]
    for area, levels in comparison.items():
        for level, row in levels.items():
            lines.append(
                f"| {area} | {level} | {row['pixels']} | {percent(row['model_agreement'])} | "
                f"{percent(row['ecosg_agreement'])} | {percent(row['model_mean_iou'])} | {percent(row['ecosg_mean_iou'])} |"
            )
    return lines


def html(text: str) -> str:
    """The Markdown of :func:`markdown` (headings, tables, list items) as a small HTML page for the report."""
    body, table = [], False
    for line in text.splitlines():
        cells = [escape(cell.strip()) for cell in line.strip("|").split("|")] if line.startswith("|") else None
        if cells is not None and set(line) <= set("|- "):
            continue  # the Markdown separator row
        if cells is not None:
            body.append(
                ("<table>" if not table else "") + "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"
            )
            table = True
            continue
        if table:
            body.append("</table>")
            table = False
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{escape(line.lstrip('# '))}</h{level}>")
        elif line.startswith("- "):
            body.append(f"<p>{escape(line[2:])}</p>")
    body.append("</table>" if table else "")
    style = "td{border:1px solid #ccc;padding:2px 6px}table{border-collapse:collapse}"
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'><style>{style}</style></head><body>{''.join(body)}</body></html>"


def percent(value: float | None) -> str:
    """0.1234 → ``12.3 %``; None → ``–``."""
    return "–" if value is None else f"{100 * value:.1f} %"
