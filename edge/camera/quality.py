"""A cheap image-quality gate for live frames: focus (variance of the Laplacian) and exposure
(clipped shadows/highlights), measured in numpy on the centre square the model will see."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lesionlite.edge.preprocess import MIN_SIDE

ANALYSIS_SIDE = 224
"""The centre square is subsampled to about this many pixels a side before measuring."""
MIN_SHARPNESS = 14.0
"""Variance of the 4-neighbour Laplacian (0..255 grey levels) below which a frame is too blurry.
Calibrated on the HAM10000 samples: sharp images score 22-640, a 2-pixel Gaussian blur <= 10."""
CLIP_FRACTION = 0.35
"""Fraction of near-black (<= 8) or near-white (>= 247) pixels above which a frame is badly exposed."""
DARK_MEAN, BRIGHT_MEAN = 35.0, 235.0
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
TIPS = {"too small": f"use a frame of at least {MIN_SIDE} pixels a side",
        "too blurry": "hold still and let the camera focus",
        "too dark": "add light",
        "too bright": "reduce glare or light"}
"""What to do about each problem, shown under 'retake: ...'."""


@dataclass(frozen=True)
class Quality:
    """The gate's verdict: ``problem`` is None for a usable frame, else a short reason."""

    sharpness: float
    brightness: float
    dark: float
    bright: float
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def to_dict(self) -> dict:
        return {"ok": self.ok, "problem": self.problem, "sharpness": round(self.sharpness, 2),
                "brightness": round(self.brightness, 2), "dark_fraction": round(self.dark, 4),
                "bright_fraction": round(self.bright, 4)}


def grey_centre(frame: np.ndarray, color_order: str = "RGB") -> np.ndarray:
    """The frame's centre square as float32 luminance, strided down to roughly ``ANALYSIS_SIDE``."""
    h, w = frame.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    step = max(1, side // ANALYSIS_SIDE)
    square = frame[top:top + side:step, left:left + side:step]
    if square.ndim == 2:
        return square.astype(np.float32)
    weights = LUMA[::-1] if color_order.upper() == "BGR" else LUMA
    return square[..., :3].astype(np.float32) @ weights


def assess(frame: np.ndarray, color_order: str = "RGB") -> Quality:
    """Measure focus and exposure; a failing frame gets a ``problem`` such as ``too blurry``."""
    if min(frame.shape[:2]) < MIN_SIDE:  # too few pixels to measure focus, or to classify
        return Quality(0.0, 0.0, 0.0, 0.0, "too small")
    g = grey_centre(frame, color_order)
    lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    sharpness, brightness = float(lap.var()), float(g.mean())
    dark, bright = float(np.mean(g <= 8)), float(np.mean(g >= 247))
    if dark > CLIP_FRACTION or brightness < DARK_MEAN:
        problem = "too dark"
    elif bright > CLIP_FRACTION or brightness > BRIGHT_MEAN:
        problem = "too bright"
    elif sharpness < MIN_SHARPNESS:
        problem = "too blurry"
    else:
        problem = None
    return Quality(sharpness, brightness, dark, bright, problem)
