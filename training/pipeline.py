"""tf.data input pipeline: decode once with the edge's preprocessing, cache, augment train only."""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from edge.labels import CLASSES
from edge.preprocess import pixels
from training.data import Record


def load_arrays(records: list[Record], size: tuple[int, int], crop: str, color_constancy: str = "none",
                workers: int = 4, desc: str = "decode") -> tuple[np.ndarray, np.ndarray]:
    """Images through :func:`edge.preprocess.pixels` (uint8 NHWC) and integer labels."""
    def one(r: Record) -> np.ndarray:
        return pixels(r.path, size, crop=crop, color_constancy=color_constancy)

    with ThreadPoolExecutor(workers) as pool:
        images = list(tqdm(pool.map(one, records), total=len(records), desc=desc, leave=False,
                           disable=None))
    x = np.stack(images) if images else np.zeros((0, *size, 3), np.uint8)
    y = np.array([CLASSES.index(r.dx) for r in records], dtype=np.int32)
    return x, y


def augment(image: tf.Tensor, max_zoom: float = 0.15) -> tf.Tensor:
    """Dermoscopy-safe augmentation on a float [0, 255] image: any flip/rotation, small
    zoom and shift, brightness/contrast/saturation/hue jitter."""
    h, w = image.shape[0], image.shape[1]
    image = tf.image.random_flip_left_right(image)
    image = tf.image.random_flip_up_down(image)
    image = tf.image.rot90(image, tf.random.uniform([], 0, 4, dtype=tf.int32))
    scale = tf.random.uniform([], 1.0 - max_zoom, 1.0)
    offset = tf.random.uniform([2], 0.0, 1.0 - scale)
    box = tf.stack([offset[0], offset[1], offset[0] + scale, offset[1] + scale])[None]
    image = tf.image.crop_and_resize(image[None], box, [0], [h, w])[0]
    x = image / 255.0
    x = tf.image.random_brightness(x, 0.08)
    x = tf.image.random_contrast(x, 0.85, 1.15)
    x = tf.image.random_saturation(x, 0.85, 1.15)
    x = tf.image.random_hue(x, 0.03)
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0


def dataset(x: np.ndarray, y: np.ndarray, batch: int, num_classes: int, training: bool,
            label_smoothing: float = 0.0, sample_weights: np.ndarray | None = None,
            seed: int = 0, mixup: float = 0.0) -> tf.data.Dataset:
    """Batches of (float pixels, one-hot labels[, weights]); shuffled and augmented if training,
    and with ``mixup`` > 0 each example blended with another of its batch (:func:`mix_batch`)."""
    onehot = tf.one_hot(y, num_classes)
    if label_smoothing:
        onehot = onehot * (1.0 - label_smoothing) + label_smoothing / num_classes
    parts = (x, onehot) if sample_weights is None else (x, onehot, sample_weights.astype(np.float32))
    ds = tf.data.Dataset.from_tensor_slices(parts)  # already in memory: no cache() copy
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)

    def prep(img, *rest):
        img = tf.cast(img, tf.float32)
        return (augment(img) if training else img, *rest)

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
