"""Evaluation report of a run: metrics JSON, confusion matrix and reliability PNGs, summary."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lesionlite.convert.plots import write_plots
from lesionlite.edge.io import atomic_write_text
from lesionlite.edge.metrics import evaluate, format_table, reliability


def write_report(out: Path, y: np.ndarray, probs_raw: np.ndarray, probs_cal: np.ndarray,
                 classes: list[str], title: str, extra: dict, lesions: list[str] | None = None) -> dict:
    """Write ``metrics.json``, ``confusion_matrix.png``, ``reliability.png`` and ``summary.md``
    (``lesions``: each image's lesion, so the balanced accuracy interval resamples lesions)."""
    out.mkdir(parents=True, exist_ok=True)
    metrics = evaluate(y, probs_cal, classes, lesions)
    metrics["ece_uncalibrated"] = reliability(probs_raw, y)["ece"]
    metrics.update(extra)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    write_plots(out, y, probs_raw, probs_cal, metrics["confusion_matrix"], classes, title)
    lines = [f"# {title}", "",
             "Decision aid only, not a diagnosis. Figures are on the lesion-disjoint split named below.", ""]
    lines += [f"- {k}: {v}" for k, v in extra.items()]
    lines += ["", "```", format_table(metrics),
              f"ECE before calibration {metrics['ece_uncalibrated']:.3f}, after {metrics['ece']:.3f}", "```", "",
              "![confusion matrix](confusion_matrix.png) ![reliability](reliability.png)", ""]
    atomic_write_text(out / "summary.md", "\n".join(lines))
    return metrics
