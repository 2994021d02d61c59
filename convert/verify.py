"""Check a converted model against its Keras original through the edge runtime itself."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from lesionlite.edge.classifier import Classifier
from lesionlite.edge.metrics import balanced_accuracy


@dataclass
class Verification:
    n: int
    agreement: float
    balanced_accuracy_float: float
    balanced_accuracy_tflite: float
    max_probability_difference: float
    top1_ties: float

    @property
    def balanced_accuracy_loss(self) -> float:
        return self.balanced_accuracy_float - self.balanced_accuracy_tflite

    def failures(self, min_agreement: float, max_ba_loss: float) -> list[str]:
        out = []
        if self.agreement < min_agreement:
            out.append(f"top-1 agreement {self.agreement:.2%} < {min_agreement:.2%}")
        if self.balanced_accuracy_loss > max_ba_loss:
            out.append(f"balanced accuracy drops {self.balanced_accuracy_loss * 100:.2f} points "
                       f"> {max_ba_loss * 100:.2f}")
        return out

    def to_dict(self) -> dict:
        return {**asdict(self), "balanced_accuracy_loss": self.balanced_accuracy_loss}


def tflite_probabilities(clf: Classifier, images: np.ndarray) -> tuple[np.ndarray, float]:
    """Calibrated probabilities for preprocessed images, and the share of top-1 ties."""
    probs, ties = [], 0
    for img in images:
        p = clf.probabilities(img)
        ties += int(np.sum(p == p.max()) > 1)
        probs.append(p)
    return np.stack(probs), ties / max(len(images), 1)


def verify(clf: Classifier, images: np.ndarray, y: np.ndarray,
           float_probs: np.ndarray) -> tuple[Verification, np.ndarray]:
    """Compare the edge's probabilities with the float model's; also return the former."""
    lite, ties = tflite_probabilities(clf, images)
    k = float_probs.shape[1]
    return Verification(
        n=len(y),
        agreement=float(np.mean(lite.argmax(1) == float_probs.argmax(1))),
        balanced_accuracy_float=balanced_accuracy(y, float_probs.argmax(1), k),
        balanced_accuracy_tflite=balanced_accuracy(y, lite.argmax(1), k),
        max_probability_difference=float(np.abs(lite - float_probs).max()),
        top1_ties=ties,
    ), lite
