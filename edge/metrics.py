"""Classification metrics in numpy only (runs on the Pi; training reuses it)."""
from __future__ import annotations

import math

import numpy as np


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> float:
    """Mean recall over the classes present in ``y_true``."""
    cm = confusion_matrix(y_true, y_pred, k)
    support = cm.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present]))


INTERVAL_LEVEL = 0.95
"""The coverage of the balanced accuracy interval that :func:`evaluate` reports (``balanced_accuracy_ci95``)."""


def balanced_accuracy_interval(y_true: np.ndarray, y_pred: np.ndarray, k: int,
                               groups: np.ndarray | list[str] | None = None, level: float = INTERVAL_LEVEL,
                               rounds: int = 2000, seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval of balanced accuracy. Each class is resampled on its own
    (the split fixes how many of each there are), by lesion when ``groups`` gives each image's
    lesion, so several images of one lesion count as one draw. Seeded: the same input, the same
    interval."""
    y_true, correct = np.asarray(y_true), np.asarray(y_pred) == np.asarray(y_true)
    groups = np.arange(len(y_true)) if groups is None else np.asarray(groups)
    rng = np.random.default_rng(seed)
    recalls = []
    for c in range(k):
        members = y_true == c
        if not members.any():
            continue
        _, lesion = np.unique(groups[members], return_inverse=True)
        hits = np.bincount(lesion, weights=correct[members].astype(float))
        images = np.bincount(lesion).astype(float)
        draw = rng.integers(0, len(images), size=(rounds, len(images)))
        recalls.append(hits[draw].sum(axis=1) / images[draw].sum(axis=1))
    if not recalls:
        return None
    ba = np.mean(recalls, axis=0)
    tail = (1.0 - level) / 2.0 * 100
    lo, hi = np.percentile(ba, [tail, 100 - tail])
    return float(lo), float(hi)


def interval_note(ci: tuple[float, float] | list[float] | None, level: float = INTERVAL_LEVEL) -> str:
    """`` (95% interval LO-HI)`` for :func:`balanced_accuracy_interval`'s result at ``level``, or nothing."""
    return f" ({level * 100:g}% interval {ci[0]:.3f}-{ci[1]:.3f})" if ci else ""


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval (95% by default) of a proportion ``k / n``: honest for small ``n``
    and for proportions near 0 or 1, where the normal approximation is not."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def share(k: int, n: int) -> str:
    """``12 of 855 (1.4%, 95% CI 0.8-2.4%)``."""
    lo, hi = wilson(k, n)
    return f"{k} of {n} ({k / max(n, 1):.1%}, 95% CI {lo:.1%}-{hi:.1%})"


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with tie correction); None if one class is absent."""
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = np.asarray(scores)[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def sensitivity_at_specificity(scores: np.ndarray, positive: np.ndarray,
                               specificity: float) -> tuple[float, float] | None:
    """Best sensitivity whose specificity is at least ``specificity``, and its threshold."""
    positive = np.asarray(positive, dtype=bool)
    neg = np.sort(np.asarray(scores)[~positive])
    pos = np.asarray(scores)[positive]
    if len(neg) == 0 or len(pos) == 0:
        return None
    # threshold t: predict positive when score > t; specificity = fraction of negatives <= t
    k = int(np.ceil(specificity * len(neg))) - 1
    t = neg[max(k, 0)]
    return float(np.mean(pos > t)), float(t)


def threshold_for_sensitivity(scores: np.ndarray, positive: np.ndarray, sensitivity: float) -> float:
    """The highest threshold ``t`` such that ``score >= t`` catches ``sensitivity`` of positives."""
    pos = np.sort(np.asarray(scores)[np.asarray(positive, dtype=bool)])[::-1]
    if len(pos) == 0:
        return 0.5
    k = int(np.ceil(sensitivity * len(pos))) - 1
    return float(pos[min(max(k, 0), len(pos) - 1)])


def reliability(probs: np.ndarray, y_true: np.ndarray, bins: int = 10) -> dict:
    """Per-bin confidence, accuracy and count of the top-class probability, and the ECE."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=bins)
    acc_sum = np.bincount(idx, weights=correct.astype(float), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, conf_sum / count, np.nan)
        mean_acc = np.where(count > 0, acc_sum / count, np.nan)
    ece = float(np.nansum(np.abs(mean_acc - mean_conf) * count) / max(len(conf), 1))
    return {"edges": edges.tolist(), "confidence": mean_conf.tolist(), "accuracy": mean_acc.tolist(),
            "count": count.tolist(), "ece": ece}


def evaluate(y_true: np.ndarray, probs: np.ndarray, classes: list[str] | tuple[str, ...],
             groups: np.ndarray | list[str] | None = None) -> dict:
    """Every figure the project reports, from true labels and class probabilities (``groups``:
    each image's lesion, for the balanced accuracy interval)."""
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    k = len(classes)
    y_pred = probs.argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, k)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    tp = np.diag(cm).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, tp / support, np.nan)
        precision = np.where(predicted > 0, tp / predicted, np.nan)
        f1 = np.where(recall + precision > 0, 2 * recall * precision / (recall + precision), 0.0)
    present = support > 0
    f1[~present] = np.nan  # no images of the class: undefined, as the macro F1 leaves it out
    per_class = {
        c: {"support": int(support[i]), "recall": _num(recall[i]), "precision": _num(precision[i]),
            "f1": _num(f1[i]), "auc": roc_auc(probs[:, i], y_true == i)}
        for i, c in enumerate(classes)
    }
    out = {
        "n": int(len(y_true)),
        "accuracy": float(np.mean(y_pred == y_true)) if len(y_true) else None,
        "balanced_accuracy": balanced_accuracy(y_true, y_pred, k) if present.any() else None,
        "balanced_accuracy_ci95": balanced_accuracy_interval(y_true, y_pred, k, groups),
        "macro_f1": float(np.mean(np.nan_to_num(f1[present]))) if present.any() else None,
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "classes": list(classes),
        "ece": reliability(probs, y_true)["ece"],
    }
    aucs = [v["auc"] for v in per_class.values() if v["auc"] is not None]
    out["macro_auc"] = float(np.mean(aucs)) if aucs else None
    if "mel" in classes:
        m = list(classes).index("mel")
        for spec in (0.8, 0.9):
            r = sensitivity_at_specificity(probs[:, m], y_true == m, spec)
            out[f"mel_sensitivity_at_{int(spec * 100)}_specificity"] = r[0] if r else None
    return out


def _num(v: float) -> float | None:
    return None if np.isnan(v) else float(v)


def format_table(metrics: dict) -> str:
    """A readable plain-text summary of :func:`evaluate`'s output."""
    def f(v):
        return "  -  " if v is None else f"{v:.3f}"

    lines = [
        f"images {metrics['n']}   accuracy {f(metrics['accuracy'])}   balanced accuracy "
        f"{f(metrics['balanced_accuracy'])}{interval_note(metrics.get('balanced_accuracy_ci95'))}   "
        f"macro F1 {f(metrics['macro_f1'])}   macro AUC {f(metrics['macro_auc'])}   ECE {f(metrics['ece'])}",
    ]
    if "mel_sensitivity_at_80_specificity" in metrics:
        lines.append(f"melanoma sensitivity at 80% specificity {f(metrics['mel_sensitivity_at_80_specificity'])}"
                     f", at 90% {f(metrics['mel_sensitivity_at_90_specificity'])}")
    lines.append(f"{'class':<7}{'n':>6}{'recall':>9}{'precision':>11}{'F1':>8}{'AUC':>8}")
    for c, v in metrics["per_class"].items():
        lines.append(f"{c:<7}{v['support']:>6}{f(v['recall']):>9}{f(v['precision']):>11}"
                     f"{f(v['f1']):>8}{f(v['auc']):>8}")
    classes = metrics["classes"]
    lines.append("confusion matrix (rows true, columns predicted)")
    lines.append("       " + "".join(f"{c:>7}" for c in classes))
    for c, row in zip(classes, metrics["confusion_matrix"]):
        lines.append(f"{c:<7}" + "".join(f"{v:>7}" for v in row))
    return "\n".join(lines)
