"""Temperature scaling and decision thresholds, fitted on the validation split."""
from __future__ import annotations

import sys

import numpy as np
from scipy.optimize import minimize_scalar

from lesionlite.edge.labels import MALIGNANT
from lesionlite.edge.metrics import softmax, threshold_for_sensitivity


def nll(logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    p = softmax(logits, temperature)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None))))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimizing validation negative log-likelihood."""
    res = minimize_scalar(lambda t: nll(logits, y, float(np.exp(t))), bounds=(-3.0, 3.0),
                          method="bounded")
    return float(np.exp(res.x))


def decision_thresholds(probs: np.ndarray, y: np.ndarray, classes: list[str],
                        sensitivity: float, confidence_floor: float) -> dict:
    """Per malignant class, the calibrated probability at which validation reaches
    ``sensitivity`` for that class; plus the confidence floor below which the answer is
    'uncertain'."""
    refer = {c: threshold_for_sensitivity(probs[:, classes.index(c)], y == classes.index(c), sensitivity)
             for c in MALIGNANT if c in classes}
    unseen = [c for c in refer if not np.any(y == classes.index(c))]
    if unseen:
        print(f"warning: no {', '.join(unseen)} image in validation: referral threshold 0.5 for "
              f"{'it' if len(unseen) == 1 else 'them'}, not fitted (the model card's sensitivity does not hold)",
              file=sys.stderr)
    return {"refer": refer, "refer_sensitivity_on_val": sensitivity,
            "confidence_floor": confidence_floor}
