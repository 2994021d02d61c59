"""The simulated lights and cameras of ``evaluate --light/--degrade``, on real lesion photos."""
from __future__ import annotations

import numpy as np
from PIL import Image

from lesionlite.edge.degrade import DEGRADATIONS, ZOOM, relight
from lesionlite.edge.preprocess import pixels


def _rgb(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGB"), dtype=float)


def test_relight_scales_each_channel_and_clips(lesion_images):
    src = Image.open(lesion_images[0]).convert("RGB")
    before, after = _rgb(src), _rgb(relight(src, (2.0, 1.0, 0.5)))
    assert np.abs(after[..., 0] - np.minimum(255, before[..., 0] * 2)).max() <= 0.5
    assert np.array_equal(after[..., 1], before[..., 1])
    assert np.abs(after[..., 2] - before[..., 2] * 0.5).max() <= 0.5


def test_each_degradation_changes_the_photo_as_named(fullres_images):
    src = Image.open(fullres_images[0]).convert("RGB")  # 600 x 450: the square is the centre 450 x 450
    square = _rgb(src)[:, 75:525]
    out = {name: d.change(src) for name, d in DEGRADATIONS.items()}
    assert np.abs(_rgb(out["dark"]) - np.round(_rgb(src) * 0.7)).max() <= 1
    assert _rgb(out["bright"]).mean() > _rgb(src).mean() * 1.15 and _rgb(out["bright"]).max() == 255

    def detail(a: np.ndarray) -> float:  # mean difference between neighbouring pixels
        return float(np.abs(np.diff(a, axis=1)).mean())

    assert out["blur"].size == src.size and detail(_rgb(out["blur"])) < 0.7 * detail(_rgb(src))
    jpeg = _rgb(out["jpeg"])
    assert jpeg.shape == _rgb(src).shape and 1 < np.abs(jpeg - _rgb(src)).mean() < 10
    zin = _rgb(out["zoom-in"])
    side = round(450 / ZOOM)
    offset = (450 - side) // 2
    assert zin.shape == (side, side, 3) and np.array_equal(zin, square[offset:offset + side, offset:offset + side])
    zout = _rgb(out["zoom-out"])
    pad = (zout.shape[0] - 450) // 2
    assert abs(zout.shape[0] / 450 - ZOOM) < 0.01 and np.array_equal(zout[pad:pad + 450, pad:pad + 450], square)
    assert np.array_equal(zout[pad - 1, pad:pad + 450], square[1])  # the frame mirrors the skin around it
    turned = _rgb(out["rotate"])
    assert turned.shape == square.shape and turned[:20, :20].max() == 0  # black corners of the square
    assert np.abs(turned[200:250, 200:250] - square[200:250, 200:250]).mean() > 5  # the photo, turned


def test_the_model_sees_the_degradation_the_name_promises_whatever_size_the_file(fullres_images):
    path = fullres_images[0]
    plain = DEGRADATIONS["blur"].load(path, 224)  # decoded reduced (JPEG draft), then blurred
    assert min(plain.size) >= 224
    blurred = pixels(plain, (224, 224)).astype(float)
    sharp = pixels(path, (224, 224)).astype(float)
    ratio = np.abs(np.diff(blurred, axis=1)).mean() / np.abs(np.diff(sharp, axis=1)).mean()
    assert ratio < 0.75
    closer = DEGRADATIONS["zoom-in"].load(path, 224)  # decoded with enough pixels for 1.3x
    assert min(closer.size) >= 224 * ZOOM - 1
