"""EfficientNet-Lite0 in Keras 3, built from int8-friendly ops only.

EfficientNet-Lite (tensorflow/tpu ``efficientnet/lite``) is EfficientNet-B0 without squeeze-excitation,
with ReLU6 instead of swish, and with the 32-channel stem and 1280-channel head kept fixed. Every conv
uses TensorFlow "SAME" padding (Keras ``padding="same"``), which is the padding of the original TF model
and of the PyTorch port (lukemelas ``Conv2dStaticSamePadding``: pad ``total // 2`` before, the rest after).

Weights are stored as an ``.npz`` archive keyed ``"<layer name>/<variable name>"`` (e.g.
``"block2a_expand_conv/kernel"``, ``"top_bn/moving_mean"``). Layer names are stable and do not depend on
the input size or on ``include_top``, so one file serves every variant: see :func:`load_npz_weights`.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np

# The ported ImageNet weights (converted from the TF EfficientNet-Lite checkpoint) expect the TF
# EfficientNet-Lite preprocessing: (rgb - 127) / 128 on 0-255 RGB, the same scalar for every channel, i.e.
# inputs in about [-1, 1]. The stem BatchNorm statistics agree: they imply a mean input of about
# (-0.05, -0.07, -0.12), against (-0.03, -0.08, -0.18) expected with 127/128 and 0 with per-channel ImageNet
# mean/std.
INPUT_MEAN: float = 127.0
INPUT_STD: float = 128.0

BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99  # Keras convention; PyTorch's momentum=0.01
STEM_FILTERS = 32
HEAD_FILTERS = 1280
TOP_LAYER = "predictions"


class Stage(NamedTuple):
    """One stage of MBConv blocks (as the TF block string ``r{repeats}_k{kernel}_s{stride}_e{expand}``)."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    filters: int


STAGES: tuple[Stage, ...] = (
    Stage(1, 3, 1, 1, 16),
    Stage(2, 3, 2, 6, 24),
    Stage(2, 5, 2, 6, 40),
    Stage(3, 3, 2, 6, 80),
    Stage(3, 5, 1, 6, 112),
    Stage(4, 5, 2, 6, 192),
    Stage(1, 3, 1, 6, 320),
)


class Block(NamedTuple):
    """One MBConv block, in network order."""

    name: str
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int


def blocks() -> list[Block]:
    """The 16 MBConv blocks of EfficientNet-Lite0, named ``block{stage}{letter}`` like Keras applications."""
    out, filters_in = [], STEM_FILTERS
    for s, stage in enumerate(STAGES, start=1):
        for r in range(stage.repeats):
            stride = stage.stride if r == 0 else 1
            out.append(Block(f"block{s}{chr(ord('a') + r)}", stage.kernel, stride, stage.expand,
                             filters_in, stage.filters))
            filters_in = stage.filters
    return out


def _conv_bn(x: keras.KerasTensor, filters: int, kernel: int, stride: int, conv: str, bn: str,
                   act: str | None) -> keras.KerasTensor:
    """Conv2D (no bias) + BatchNorm, then ReLU6 named ``act`` unless ``act`` is None."""
    x = keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=conv)(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=bn)(x)
    return keras.layers.ReLU(6.0, name=act)(x) if act else x


def _mbconv(x: keras.KerasTensor, b: Block) -> keras.KerasTensor:
    """Inverted residual: [1x1 expand] -> depthwise kxk -> 1x1 project (linear) [+ identity]."""
    inputs = x
    if b.expand != 1:
        x = _conv_bn(x, b.filters_in * b.expand, 1, 1, f"{b.name}_expand_conv", f"{b.name}_expand_bn",
                           f"{b.name}_expand_activation")
    x = keras.layers.DepthwiseConv2D(b.kernel, strides=b.stride, padding="same", use_bias=False,
                                     name=f"{b.name}_dwconv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{b.name}_bn")(x)
    x = keras.layers.ReLU(6.0, name=f"{b.name}_activation")(x)
    x = _conv_bn(x, b.filters_out, 1, 1, f"{b.name}_project_conv", f"{b.name}_project_bn", None)
    if b.stride == 1 and b.filters_in == b.filters_out:
        x = keras.layers.Add(name=f"{b.name}_add")([x, inputs])
    return x


def efficientnet_lite0(input_shape: tuple[int, int, int] = (224, 224, 3), include_top: bool = False,
                       weights: str | None = None, classes: int = 1000, dropout: float = 0.2) -> keras.Model:
    """Build EfficientNet-Lite0.

    Input: float RGB already normalized as ``(x - INPUT_MEAN) / INPUT_STD`` (0-255 RGB -> about [-1, 1]).
    Any input size works (tested 96-224); stride 32 overall.
    ``include_top=False`` returns the feature map after the 1280-ch head conv+BN+ReLU6 (no pooling);
    ``include_top=True`` adds global average pooling, dropout and ``Dense(classes)`` named
    ``"predictions"`` producing LOGITS (no softmax).
    ``weights``: path to an ``.npz`` written by ``lesionlite.training.port_efficientnet`` (or :func:`save_npz_weights`),
    loaded by layer name with :func:`load_npz_weights`: the top is skipped when absent from the model or
    when ``classes`` differs from the file's.
    """
    inputs = keras.Input(shape=input_shape, name="input")
    x = _conv_bn(inputs, STEM_FILTERS, 3, 2, "stem_conv", "stem_bn", "stem_activation")
    for b in blocks():
        x = _mbconv(x, b)
    x = _conv_bn(x, HEAD_FILTERS, 1, 1, "top_conv", "top_bn", "top_activation")
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dropout(dropout, name="top_dropout")(x)
        x = keras.layers.Dense(classes, name=TOP_LAYER)(x)
    model = keras.Model(inputs, x, name="efficientnet_lite0")
    if weights is not None:
        load_npz_weights(model, weights)
    return model


def _key(layer: keras.layers.Layer, variable: keras.Variable) -> str:
    return f"{layer.name}/{variable.name}"


def save_npz_weights(model: keras.Model, path: str | Path) -> None:
    """Write every variable of ``model`` to ``path`` (``.npz``) keyed ``"<layer>/<variable>"``."""
    arrays = {_key(layer, v): np.asarray(v) for layer in model.layers for v in layer.weights}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def load_npz_weights(model: keras.Model, path: str | Path) -> None:
    """Assign ``model``'s variables from an ``.npz`` written by :func:`save_npz_weights`, by layer name.

    Keys of layers the model lacks (the top of a no-top model) are ignored. The ``"predictions"`` layer is
    left as initialized when the file has none or its shape differs (another class count). Any other
    missing key or shape mismatch raises ``ValueError``.
    """
    with np.load(path) as archive:
        arrays = dict(archive)
    for layer in model.layers:
        values = [arrays.get(_key(layer, v)) for v in layer.weights]
        fits = all(a is not None and a.shape == tuple(v.shape) for a, v in zip(values, layer.weights))
        if layer.name == TOP_LAYER and not fits:
            continue
        if not fits:
            raise ValueError(f"{path}: no matching weights for layer {layer.name!r}")
        for a, v in zip(values, layer.weights):
            v.assign(a)
