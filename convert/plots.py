"""Figures of a model on a labelled split: confusion matrix and reliability PNGs (matplotlib, no display)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lesionlite.edge.metrics import reliability  # noqa: E402


def plot_confusion(cm: np.ndarray, classes: list[str], path: Path, title: str) -> None:
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6, 5.2))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{cm[i, j]}\n{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, label="row-normalized recall")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_reliability(curves: dict[str, dict], path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    for name, rel in curves.items():
        conf, acc = np.array(rel["confidence"], float), np.array(rel["accuracy"], float)
        ok = ~np.isnan(conf)
        ax.plot(conf[ok], acc[ok], "o-", label=f"{name} (ECE {rel['ece']:.3f})")
    ax.set_xlabel("confidence (top-class probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(out: Path, y: np.ndarray, probs_raw: np.ndarray, probs_cal: np.ndarray, confusion: list,
                classes: list[str], title: str) -> None:
    """``confusion_matrix.png`` and ``reliability.png`` (before and after temperature scaling)."""
    plot_confusion(np.array(confusion), classes, out / "confusion_matrix.png", title)
    plot_reliability({"uncalibrated": reliability(probs_raw, y), "temperature-scaled": reliability(probs_cal, y)},
                     out / "reliability.png", title)
