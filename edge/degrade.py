"""Simulated changes of light, camera and hand, to measure how far the model's answers move
(``lesionlite evaluate --light`` and ``--degrade``). Each maps a decoded image to another before
the model's own preprocessing; none is used when classifying for real."""
from __future__ import annotations

import io
from typing import Callable

import numpy as np
from PIL import Image, ImageFilter

from edge.preprocess import center_square, to_rgb

ZOOM = 1.3
"""How far ``zoom-in`` and ``zoom-out`` move the camera."""


def relight(im: Image.Image, gains: tuple[float, float, float]) -> Image.Image:
    """``im`` as if taken under another light: each channel multiplied by its gain (clipped), e.g.
    (1.15, 1.0, 0.8) for a warm lamp."""
    bands = [band.point(lambda v, g=g: min(255, round(v * g))) for band, g in zip(to_rgb(im).split(), gains)]
    return Image.merge("RGB", bands)


def _blur(im: Image.Image) -> Image.Image:
    """Out of focus: a Gaussian blur of 1/150 of the short side (1.5 px at 224 px)."""
    return im.filter(ImageFilter.GaussianBlur(min(im.size) / 150))


def _jpeg(im: Image.Image) -> Image.Image:
    """Saved at JPEG quality 30, as by a messaging app."""
    buf = io.BytesIO()
    to_rgb(im).save(buf, "JPEG", quality=30)
    return Image.open(io.BytesIO(buf.getvalue()))


def _zoom_in(im: Image.Image) -> Image.Image:
    """The camera 1.3x closer: the centre 1/1.3 of the square."""
    sq = center_square(im)
    side = round(sq.width / ZOOM)
    offset = (sq.width - side) // 2
    return sq.crop((offset, offset, offset + side, offset + side))


def _zoom_out(im: Image.Image) -> Image.Image:
    """The camera 1.3x farther: the square shrunk into a frame of mirrored skin."""
    rgb = np.asarray(to_rgb(center_square(im)))
    pad = round(rgb.shape[0] * (ZOOM - 1) / 2)
    return Image.fromarray(np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode="reflect"))


def _rotate(im: Image.Image) -> Image.Image:
    """Turned by 30 degrees with black corners, as a dermatoscope's round field of view leaves."""
    return to_rgb(im).rotate(30, resample=Image.BILINEAR)


DEGRADATIONS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "dark": lambda im: relight(im, (0.7, 0.7, 0.7)),
    "bright": lambda im: relight(im, (1.3, 1.3, 1.3)),
    "blur": _blur,
    "jpeg": _jpeg,
    "zoom-in": _zoom_in,
    "zoom-out": _zoom_out,
    "rotate": _rotate,
}
"""Named degradations (``evaluate --degrade``): under- and over-exposure by 0.7x and 1.3x, defocus,
JPEG quality 30, the camera 1.3x closer or farther, a 30-degree turn with black corners."""
