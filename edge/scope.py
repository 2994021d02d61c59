"""The scope gate: is this a dermoscopic image of a skin lesion at all?

The model has only seen dermatoscope images, and its 7-class answer means nothing for a photo of a
dog or a bare phone photo of the skin. A bundle's ``metadata.json`` may carry a ``scope`` section: a
logistic score on the network's pooled features (the model's second output), fitted by
``lesionlite scope`` on dermoscopy and on negatives a user's camera would see. Below the section's
threshold the device declines to answer (decision ``out-of-scope``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

OUT_OF_SCOPE = "out-of-scope"
NOT_DERMOSCOPY = "Not a dermoscopic image - this model reads dermatoscope images only"
"""What a screen shows in place of a label for an out-of-scope image."""


@dataclass(frozen=True)
class ScopeGate:
    """``score = sigmoid(weights . features + bias)``; an image is in scope when ``score >= threshold``."""

    weights: np.ndarray
    bias: float
    threshold: float

    @classmethod
    def from_dict(cls, scope: dict) -> "ScopeGate":
        """From the metadata's ``scope`` section (its values checked by the bundle loader)."""
        return cls(np.asarray(scope["weights"], dtype=np.float64), float(scope["bias"]), float(scope["threshold"]))

    @property
    def size(self) -> int:
        """How many features the gate reads: the size of the model's second output."""
        return len(self.weights)

    def score(self, features: np.ndarray) -> float:
        """The in-scope score in [0, 1] of dequantized pooled features (one image)."""
        z = float(np.dot(self.weights, features.astype(np.float64)) + self.bias)
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def admits(self, score: float) -> bool:
        return score >= self.threshold

    def reason(self, score: float) -> str:
        """Why an image was declined, in words, with the figures shown precisely enough to differ."""
        digits = next((d for d in (2, 3, 4) if f"{score:.{d}f}" != f"{self.threshold:.{d}f}"), 6)
        return (f"not a dermoscopic image of a skin lesion (scope score {score:.{digits}f} < "
                f"{self.threshold:.{digits}f})")
