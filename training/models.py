"""Model architectures. Every model takes RGB pixels in [0, 255] and returns class logits.

Normalization lives inside the graph, so the edge feeds raw pixels (the bundle says so) and the
int8 model's uint8 input maps one-to-one onto pixel values.
"""
from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers

from lesionlite.training.archs import ARCHS


@dataclass
class Built:
    model: keras.Model
    backbone: keras.Model | None  # frozen in phase 1, partly unfrozen in phase 2
    crop: str  # the crop policy the model is trained with




def seed_cnn(size: tuple[int, int], num_classes: int) -> Built:
    """The starting notebook's Sequential CNN (75x100 input, whole image resized, no crop)."""
    inputs = keras.Input((*size, 3), name="image")
    x = layers.Rescaling(1.0 / 255.0)(inputs)
    for filters, drop in ((32, 0.25), (64, 0.40)):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Dropout(drop)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    return Built(keras.Model(inputs, logits, name="seed_cnn"), None, "none")


def _head(inputs: keras.KerasTensor, features: keras.KerasTensor, num_classes: int,
          dropout: float, name: str) -> keras.Model:
    x = layers.GlobalAveragePooling2D()(features)
    x = layers.Dropout(dropout)(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name=name)


def mobilenetv2(size: tuple[int, int], num_classes: int, weights: str | None,
                alpha: float = 0.5, dropout: float = 0.3) -> Built:
    """MobileNetV2 (ImageNet weights from a local .h5 file) with a small logits head."""
    backbone = keras.applications.MobileNetV2(
        input_shape=(*size, 3), alpha=alpha, include_top=False, weights=weights)
    inputs = keras.Input((*size, 3), name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)
    features = backbone(x)  # BatchNorm normalizes with batch statistics only while trainable
    return Built(_head(inputs, features, num_classes, dropout, f"mobilenetv2_{alpha}"),
                 backbone, "center_square")


def efficientnet_lite0(size: tuple[int, int], num_classes: int, weights: str | None,
                       dropout: float = 0.3) -> Built:
    """EfficientNet-Lite0 (weights ported from the PyTorch checkpoint) with a logits head."""
    from lesionlite.training import efficientnet_lite as effl

    backbone = effl.efficientnet_lite0((*size, 3), include_top=False, weights=weights)
    inputs = keras.Input((*size, 3), name="image")
    x = layers.Normalization(mean=effl.INPUT_MEAN, variance=_square(effl.INPUT_STD))(inputs)
    features = backbone(x)
    return Built(_head(inputs, features, num_classes, dropout, "efficientnet_lite0"),
                 backbone, "center_square")


def _square(std: float | tuple[float, ...]) -> float | list[float]:
    return [s * s for s in std] if isinstance(std, (tuple, list)) else std * std


def build(arch: str, size: tuple[int, int], num_classes: int, weights: str | None = None,
          alpha: float = 0.5) -> Built:
    if arch == "seed-cnn":
        return seed_cnn(size, num_classes)
    if arch == "mobilenetv2":
        return mobilenetv2(size, num_classes, weights, alpha)
    if arch == "efficientnet-lite0":
        return efficientnet_lite0(size, num_classes, weights)
    raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHS}")


def unfreeze_top(backbone: keras.Model, fraction: float, batchnorm: bool = False) -> int:
    """Make the top ``fraction`` of the backbone's layers trainable. BatchNorm layers among them
    train too only if ``batchnorm``; a frozen one (Keras 3) normalizes with its stored statistics."""
    backbone.trainable = True
    n = len(backbone.layers)
    first = int(n * (1.0 - fraction))
    for i, layer in enumerate(backbone.layers):
        layer.trainable = i >= first and (batchnorm or not isinstance(layer, layers.BatchNormalization))
    return n - first
