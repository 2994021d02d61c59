"""tf.data input pipeline over arrays decoded once (:func:`lesionlite.convert.data.load_arrays`): augment train only."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import tensorflow as tf

from lesionlite.training.archs import AUGMENTATIONS


def augment(image: tf.Tensor, policy: str = "mild", aspect_jitter: float = 0.0) -> tf.Tensor:
    """Dermoscopy-safe augmentation of a float [0, 255] image by ``policy`` (see
    :data:`lesionlite.training.archs.AUGMENTATIONS`), first stretched along one axis by up to
    ``1 + aspect_jitter`` (:func:`stretch`) if that is above 0."""
    if policy not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {policy!r}; expected one of {AUGMENTATIONS}")
    robust = policy == "robust"
    if aspect_jitter > 0:  # log-uniform, so widening and heightening are equally likely
        most = math.log(1.0 + aspect_jitter)
        image = stretch(image, tf.exp(tf.random.uniform([], -most, most)))
    x = tf.image.random_flip_up_down(tf.image.random_flip_left_right(image))
    if robust:
        x = affine(x, tf.random.uniform([], 0.0, 2.0 * math.pi),
                   tf.exp(tf.random.uniform([], math.log(0.75), math.log(1.3))),
                   tf.random.uniform([2], -0.1, 0.1), black=tf.random.uniform([]) < 0.25)
    else:
        x = _mild_geometry(x)
    x = x / 255.0
    if robust:
        x = x * tf.exp(tf.random.uniform([], math.log(0.6), math.log(1.4)))  # exposure
    x = tf.image.random_brightness(x, 0.08)
    x = tf.image.random_contrast(x, 0.85, 1.15)
    x = tf.image.random_saturation(x, 0.85, 1.15)
    x = tf.image.random_hue(x, 0.03)
    x = tf.clip_by_value(x, 0.0, 1.0)
    if robust:
        x = camera_effects(x)
    return x * 255.0


def stretch(image: tf.Tensor, ratio: tf.Tensor) -> tf.Tensor:
    """``image`` with its content widened ``ratio`` times (below 1: made taller 1 / ``ratio`` times),
    its size kept: the central part that fills it once stretched is resized to the whole, as a
    picture resized without keeping its aspect ratio is (an ISIC image squashed from 4:3 to 1:1 is
    one made 0.75 times as wide)."""
    h, w = image.shape[0], image.shape[1]
    bw, bh = tf.minimum(1.0, 1.0 / ratio), tf.minimum(1.0, ratio)
    box = tf.stack([(1.0 - bh) / 2, (1.0 - bw) / 2, (1.0 + bh) / 2, (1.0 + bw) / 2])[None]
    return tf.image.crop_and_resize(image[None], box, [0], [h, w])[0]


def camera_effects(x: tf.Tensor) -> tf.Tensor:
    """A [0, 1] image defocused (Gaussian, sigma 1/560 to 1/140 of the short side) three times in
    ten, and JPEG-compressed (quality 25-90) three times in ten."""
    side = min(x.shape[0], x.shape[1])
    x = _sometimes(0.3, lambda: gaussian_blur(x, tf.random.uniform([], 0.27, 1.07) * side / 150), x)
    x = _sometimes(0.3, lambda: tf.image.random_jpeg_quality(x, 25, 90), x)
    return tf.ensure_shape(x, x.shape)  # a decoded JPEG has no static shape


def _sometimes(p: float, fn: Callable[[], tf.Tensor], otherwise: tf.Tensor) -> tf.Tensor:
    return tf.cond(tf.random.uniform([]) < p, fn, lambda: otherwise)


def _mild_geometry(image: tf.Tensor, max_zoom: float = 0.15) -> tf.Tensor:
    """A quarter turn and a random square crop of 85-100% of the side, resized back."""
    h, w = image.shape[0], image.shape[1]
    image = tf.image.rot90(image, tf.random.uniform([], 0, 4, dtype=tf.int32))
    scale = tf.random.uniform([], 1.0 - max_zoom, 1.0)
    offset = tf.random.uniform([2], 0.0, 1.0 - scale)
    box = tf.stack([offset[0], offset[1], offset[0] + scale, offset[1] + scale])[None]
    return tf.image.crop_and_resize(image[None], box, [0], [h, w])[0]


def affine(image: tf.Tensor, angle: tf.Tensor, scale: tf.Tensor, shift: tf.Tensor,
           black: tf.Tensor | bool = False) -> tf.Tensor:
    """``image`` turned by ``angle`` (radians) about its centre, zoomed by ``scale`` (below 1 the
    lesion shrinks) and shifted by ``shift`` (x, y) times its size, bilinear; the borders this
    uncovers are mirrored, or black (as in dermatoscopes' images) where ``black``."""
    h, w = image.shape[0], image.shape[1]
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    dx, dy = -shift[0] * w, -shift[1] * h
    # output pixel (x, y) samples the input at R(angle) (x - c) / scale + c - shift
    transform = tf.stack([cos, -sin, cx - cos * cx + sin * cy + dx,
                          sin, cos, cy - sin * cx - cos * cy + dy, 0.0, 0.0])[None]

    def warp(fill_mode: str) -> tf.Tensor:
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=image[None], transforms=tf.cast(transform, tf.float32), output_shape=[h, w],
            fill_value=0.0, interpolation="BILINEAR", fill_mode=fill_mode)[0]

    return tf.cond(black, lambda: warp("CONSTANT"), lambda: warp("REFLECT"))


def gaussian_blur(x: tf.Tensor, sigma: tf.Tensor) -> tf.Tensor:
    """Separable Gaussian blur of an ``(H, W, C)`` image (reflected borders), as an out-of-focus
    lens; the kernel reaches 2.5 sigma for sigma up to 1/140 of the short side."""
    radius = max(1, math.ceil(2.5 * min(x.shape[0], x.shape[1]) / 140))
    r = tf.range(-radius, radius + 1, dtype=tf.float32)
    k = tf.exp(-0.5 * (r / sigma) ** 2)
    k = k / tf.reduce_sum(k)
    c = x.shape[-1]
    padded = tf.pad(x[None], [[0, 0], [radius, radius], [radius, radius], [0, 0]], "REFLECT")
    out = tf.nn.depthwise_conv2d(padded, tf.tile(tf.reshape(k, [1, -1, 1, 1]), [1, 1, c, 1]),
                                 [1, 1, 1, 1], "VALID")
    out = tf.nn.depthwise_conv2d(out, tf.tile(tf.reshape(k, [-1, 1, 1, 1]), [1, 1, c, 1]),
                                 [1, 1, 1, 1], "VALID")
    return out[0]


def dataset(x: np.ndarray, y: np.ndarray, batch: int, num_classes: int, training: bool,
            label_smoothing: float = 0.0, sample_weights: np.ndarray | None = None,
            seed: int = 0, mixup: float = 0.0, augmentation: str = "mild",
            aspect_jitter: float = 0.0) -> tf.data.Dataset:
    """Batches of (float pixels, one-hot labels[, weights]); if training, shuffled, augmented by
    the ``augmentation`` policy (after a stretch of up to ``1 + aspect_jitter``) and, with ``mixup`` > 0,
    each example blended with another of its batch (:func:`mix_batch`)."""
    onehot = tf.one_hot(y, num_classes)
    if label_smoothing:
        onehot = onehot * (1.0 - label_smoothing) + label_smoothing / num_classes
    parts = (x, onehot) if sample_weights is None else (x, onehot, sample_weights.astype(np.float32))
    ds = tf.data.Dataset.from_tensor_slices(parts)  # already in memory: no cache() copy
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)

    def prep(img, *rest):
        img = tf.cast(img, tf.float32)
        return (augment(img, augmentation, aspect_jitter) if training else img, *rest)

    ds = ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE).batch(batch)
    if training and mixup > 0:
        ds = ds.map(lambda *parts: mix_batch(parts, mixup), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def mix_batch(parts: tuple[tf.Tensor, ...], alpha: float) -> tuple[tf.Tensor, ...]:
    """Mixup (Zhang et al., 2018): images, labels and weights of a batch blended with the batch
    reversed, each example by its own ``lam ~ Beta(alpha, alpha)`` (kept >= 0.5, so the example
    stays the larger part)."""
    n = tf.shape(parts[0])[0]
    a = tf.random.gamma([n], alpha)
    lam = a / (a + tf.random.gamma([n], alpha))
    lam = tf.maximum(lam, 1.0 - lam)

    def blend(t: tf.Tensor) -> tf.Tensor:
        w = tf.reshape(lam, [-1] + [1] * (len(t.shape) - 1))
        return w * t + (1.0 - w) * tf.reverse(t, [0])

    return tuple(blend(t) for t in parts)


def balanced_sample_weights(y: np.ndarray, num_classes: int, power: float = 1.0) -> np.ndarray:
    """Per-example weights ``(n / (k * n_c)) ** power`` so each class weighs the same at power 1."""
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    per_class = (len(y) / (num_classes * np.maximum(counts, 1))) ** power
    return per_class[y]


def steps(n: int, batch: int) -> int:
    return math.ceil(n / batch)
