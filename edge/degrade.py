"""Simulated changes of light, camera and hand, to measure how far the model's answers move
(``lesionlite evaluate --light`` and ``--degrade``). Each changes a decoded image before the
model's own preprocessing; none is used when classifying for real."""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageFilter

from lesionlite.edge.preprocess import Source, center_square, load_image, to_rgb

EXPOSURE = (0.7, 1.3)
"""Gains of ``dark`` and ``bright``."""
BLUR = 1 / 150
"""Gaussian sigma of ``blur`` as a share of the short side (1.5 px at 224 px)."""
JPEG_QUALITY = 30
ZOOM = 1.3
"""How far ``zoom-in`` and ``zoom-out`` move the camera."""
TURN = 30
"""Degrees ``rotate`` turns the image by."""


@dataclass(frozen=True)
class Alteration:
    """A change of each decoded image. ``detail``: how many times the model's input side the image
    is decoded at first (JPEGs are decoded reduced when they are large; zooming in needs more)."""

    change: Callable[[Image.Image], Image.Image]
    detail: float = 1.0

    def load(self, source: Source, side: int) -> Image.Image:
        return self.change(load_image(source, math.ceil(side * self.detail)))

    def after(self, first: Callable[[Image.Image], Image.Image]) -> Alteration:
        """This change applied after ``first``."""
        return Alteration(lambda im: self.change(first(im)), self.detail)


def relight(im: Image.Image, gains: tuple[float, float, float]) -> Image.Image:
    """``im`` as if taken under another light: each channel multiplied by its gain (clipped), e.g.
    (1.15, 1.0, 0.8) for a warm lamp."""
    bands = [band.point(lambda v, g=g: min(255, round(v * g))) for band, g in zip(to_rgb(im).split(), gains)]
    return Image.merge("RGB", bands)


def _blur(im: Image.Image) -> Image.Image:
    """Out of focus: a Gaussian blur of sigma :data:`BLUR` of the short side."""
    return im.filter(ImageFilter.GaussianBlur(min(im.size) * BLUR))


def _jpeg(im: Image.Image) -> Image.Image:
    """Saved at :data:`JPEG_QUALITY`, as by a messaging app (at the size decoded)."""
    buf = io.BytesIO()
    to_rgb(im).save(buf, "JPEG", quality=JPEG_QUALITY)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")  # decoded here, in full


def _zoom_in(im: Image.Image) -> Image.Image:
    """The camera :data:`ZOOM` times closer: the centre 1/ZOOM of the square."""
    sq = center_square(im)
    side = round(sq.width / ZOOM)
    offset = (sq.width - side) // 2
    return sq.crop((offset, offset, offset + side, offset + side))


def _zoom_out(im: Image.Image) -> Image.Image:
    """The camera :data:`ZOOM` times farther: the square shrunk into a frame of mirrored skin."""
    rgb = np.asarray(to_rgb(center_square(im)))
    pad = round(rgb.shape[0] * (ZOOM - 1) / 2)
    return Image.fromarray(np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode="reflect"))


def _rotate(im: Image.Image) -> Image.Image:
    """The square turned by :data:`TURN` degrees, leaving black corners (the black borders some
    dermatoscopes' images have)."""
    return to_rgb(center_square(im)).rotate(TURN, resample=Image.BILINEAR)


DEGRADATIONS: dict[str, Alteration] = {
    "dark": Alteration(lambda im: relight(im, (EXPOSURE[0],) * 3)),
    "bright": Alteration(lambda im: relight(im, (EXPOSURE[1],) * 3)),
    "blur": Alteration(_blur),
    "jpeg": Alteration(_jpeg),
    "zoom-in": Alteration(_zoom_in, detail=ZOOM),
    "zoom-out": Alteration(_zoom_out),
    "rotate": Alteration(_rotate),
}
"""The simulations ``evaluate --degrade`` names."""
DEGRADE_HELP = (f"dark/bright (exposure {EXPOSURE[0]:g}x / {EXPOSURE[1]:g}x), blur (sigma 1/{1 / BLUR:.0f} of the "
                f"side), jpeg (quality {JPEG_QUALITY}), zoom-in/zoom-out ({ZOOM:g}x), rotate ({TURN} degrees, "
                "black corners)")
