"""From raw model output to a calibrated answer and a decision (refer / uncertain / monitor)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lesionlite.edge.bundle import OutputSpec
from lesionlite.edge.labels import DISCLAIMER
from lesionlite.edge.metrics import softmax
from lesionlite.edge.scope import OUT_OF_SCOPE, ScopeGate

def dequantize(raw: np.ndarray, spec: OutputSpec) -> np.ndarray:
    if spec.dtype in ("uint8", "int8") and spec.scale:
        return (raw.astype(np.float32) - spec.zero_point) * spec.scale
    return raw.astype(np.float32)


def probabilities(raw: np.ndarray, spec: OutputSpec, temperature: float = 1.0) -> np.ndarray:
    """Dequantize and turn logits into temperature-scaled probabilities that sum to one."""
    values = dequantize(raw, spec)
    kind = spec.kind
    if kind == "auto":
        kind = "probabilities" if _looks_like_probabilities(values, spec) else "logits"
    if kind == "probabilities":
        values = np.clip(values, 0.0, None)
        return values / np.maximum(values.sum(axis=-1, keepdims=True), 1e-12)
    return softmax(values, temperature).astype(np.float32)


def _looks_like_probabilities(values: np.ndarray, spec: OutputSpec) -> bool:
    """A bare model's output is a softmax when it is quantized in steps of 1/256 from zero, or,
    in float, non-negative and summing to one."""
    if spec.dtype in ("uint8", "int8"):
        return abs(spec.scale * 256 - 1) < 0.01 and spec.zero_point in (0, -128)
    return bool(np.all(values >= 0) and np.allclose(values.sum(axis=-1), 1.0, atol=0.02))


@dataclass(frozen=True)
class Prediction:
    """What the model says of one image, before any decision: calibrated class probabilities and
    the in-scope score (None without a scope gate)."""

    probs: np.ndarray
    scope: float | None = None


@dataclass
class Result:
    """One image's answer. ``decision`` is ``refer``, ``uncertain``, ``monitor``, ``none`` for a
    model without decision thresholds (a bare third-party model), or ``out-of-scope`` when the scope
    gate declines the image: then ``label``, ``name`` and ``top`` are empty, and ``probabilities``
    are kept for inspection only."""

    label: str
    name: str
    confidence: float
    decision: str
    reason: str
    probabilities: dict[str, float]
    top: list[tuple[str, str, float]] = field(default_factory=list)
    scope: float | None = None
    disclaimer: str = DISCLAIMER

    def to_dict(self) -> dict:
        return {"label": self.label, "name": self.name, "confidence": round(self.confidence, 6),
                "decision": self.decision, "reason": self.reason,
                "top": [{"code": c, "name": n, "probability": round(p, 6)} for c, n, p in self.top],
                "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
                "scope": None if self.scope is None else round(self.scope, 6),
                "disclaimer": self.disclaimer}


def decide(probs: dict[str, float], thresholds: dict) -> tuple[str, str]:
    """``refer`` if a malignant class reaches its threshold, else ``uncertain`` below the
    confidence floor, else ``monitor``; with the reason in words."""
    if not thresholds:
        return "none", "this model carries no decision thresholds"
    hits = [(c, p, t) for c, t in thresholds.get("refer", {}).items() if (p := probs.get(c, 0.0)) >= t]
    if hits:
        c, p, t = max(hits, key=lambda h: h[1] / max(h[2], 1e-9))
        return "refer", f"p({c}) {p:.2f} >= referral threshold {t:.2f}"
    top_code = max(probs, key=probs.get)
    floor = float(thresholds.get("confidence_floor", 0.0))
    if probs[top_code] < floor:
        return "uncertain", f"top probability {probs[top_code]:.2f} < confidence floor {floor:.2f}"
    return "monitor", "no malignant class reached its referral threshold"


def make_result(pred: Prediction, labels: list[tuple[str, str]], thresholds: dict, top_k: int = 3,
                gate: ScopeGate | None = None) -> Result:
    """The answer for ``pred``: declined when ``gate`` finds the image out of scope, else the top
    classes and the decision."""
    probs = pred.probs
    as_dict = {c: float(p) for (c, _), p in zip(labels, probs)}
    if gate is not None and pred.scope is not None and not gate.admits(pred.scope):
        return Result("", "", 0.0, OUT_OF_SCOPE, gate.reason(pred.scope), as_dict, [], pred.scope)
    order = np.argsort(-probs)[:max(1, top_k)]
    top = [(labels[i][0], labels[i][1], float(probs[i])) for i in order]
    decision, reason = decide(as_dict, thresholds)
    return Result(top[0][0], top[0][1], top[0][2], decision, reason, as_dict, top, pred.scope)
