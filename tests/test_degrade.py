"""The simulated lights and cameras of ``evaluate --light/--degrade``, on a real lesion photo."""
from __future__ import annotations

import numpy as np
from PIL import Image

from edge.degrade import DEGRADATIONS, ZOOM, relight


def _rgb(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGB"), dtype=float)


def test_relight_scales_each_channel_and_clips(lesion_images):
    src = Image.open(lesion_images[0]).convert("RGB")
    before, after = _rgb(src), _rgb(relight(src, (2.0, 1.0, 0.5)))
    assert np.abs(after[..., 0] - np.minimum(255, before[..., 0] * 2)).max() <= 0.5
    assert np.array_equal(after[..., 1], before[..., 1])
    assert np.abs(after[..., 2] - before[..., 2] * 0.5).max() <= 0.5


def test_each_degradation_changes_the_photo_as_named(fullres_images):
    src = Image.open(fullres_images[0])  # 600 x 450: the square is the centre 450 x 450
    square = _rgb(src)[:, 75:525]
    out = {name: fn(src) for name, fn in DEGRADATIONS.items()}
    assert np.abs(_rgb(out["dark"]) - np.round(_rgb(src) * 0.7)).max() <= 1
    assert _rgb(out["bright"]).mean() > _rgb(src).mean() * 1.15 and _rgb(out["bright"]).max() == 255

    def detail(a: np.ndarray) -> float:  # mean difference between neighbouring pixels
        return float(np.abs(np.diff(a, axis=1)).mean())

    assert out["blur"].size == src.size and detail(_rgb(out["blur"])) < 0.7 * detail(_rgb(src))
    jpeg = _rgb(out["jpeg"])
    assert out["jpeg"].format == "JPEG" and jpeg.shape == _rgb(src).shape and 1 < np.abs(jpeg - _rgb(src)).mean() < 10
    zin = _rgb(out["zoom-in"])
    side = round(450 / ZOOM)
    offset = (450 - side) // 2
    assert zin.shape == (side, side, 3) and np.array_equal(zin, square[offset:offset + side, offset:offset + side])
    zout = _rgb(out["zoom-out"])
    pad = (zout.shape[0] - 450) // 2
    assert abs(zout.shape[0] / 450 - ZOOM) < 0.01 and np.array_equal(zout[pad:pad + 450, pad:pad + 450], square)
    assert np.array_equal(zout[pad - 1, pad:pad + 450], square[1])  # the frame mirrors the skin around it
    turned = _rgb(out["rotate"])
    assert turned.shape == _rgb(src).shape and turned[:8, :8].max() == 0  # a black corner
    assert turned[200:250, 275:325].std() > 0  # the centre is still the photo
