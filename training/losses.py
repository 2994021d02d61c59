"""Training losses beyond Keras' own."""
from __future__ import annotations

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="lesionlite")
class LogitAdjustedCrossEntropy(keras.losses.Loss):
    """Cross-entropy on ``logits + tau * log(prior)`` (Menon et al., ICLR 2021): the raw logits then
    rank classes as if all were equally common, which is what balanced accuracy scores, without
    the large per-example weights of class weighting."""

    def __init__(self, log_prior: list[float], tau: float = 1.0, name: str = "logit_adjusted_ce",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self.log_prior = [float(v) for v in log_prior]
        self.tau = float(tau)

    @classmethod
    def for_labels(cls, y: np.ndarray, num_classes: int, tau: float = 1.0) -> LogitAdjustedCrossEntropy:
        """The loss for training labels ``y`` (their class frequencies are the prior)."""
        counts = np.bincount(y, minlength=num_classes).astype(np.float64)
        return cls(list(np.log(np.maximum(counts, 1) / counts.sum())), tau)

    def call(self, y_true, y_pred):
        offsets = keras.ops.convert_to_tensor(self.log_prior, dtype=y_pred.dtype) * self.tau
        return keras.losses.categorical_crossentropy(y_true, y_pred + offsets, from_logits=True)

    def get_config(self) -> dict:
        return {**super().get_config(), "log_prior": self.log_prior, "tau": self.tau}
